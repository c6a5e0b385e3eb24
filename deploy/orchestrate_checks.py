"""Before any host is touched: the hardware of every backend host, and the roles' own data.

``detect_hardware`` is the GPU-detection phase: ``roles/gpu/facts.py``'s ``HostGpus`` (a
``gpus:`` override wins, otherwise the tools run on the host) on every backend host of the
inventory, also those outside ``--limit``, because the router's config covers the whole fleet.

``check_role_data`` finds what the plan cannot: a native Ollama host without the release
sha256, a llama-swap host without its release, a llama.cpp host with no binary source. Each
problem names the file to fix, the host and the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import ConnectError

from deploy.fleet import Fleet, FleetError
from deploy.gpu import HostHardware, ParseError
from deploy.planner import FleetPlan
from roles.gpu.facts import HostGpus
from roles.llama_server.defaults import DEFAULTS as LLAMA_SERVER_DEFAULTS
from roles.llama_swap.defaults import DEFAULTS as LLAMA_SWAP_DEFAULTS
from roles.ollama.defaults import DEFAULTS as OLLAMA_DEFAULTS

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def detect_hardware(fleet: Fleet, inventory: Any) -> dict[str, HostHardware]:
    """Hardware per node name for every backend host (``gpus:`` override, else detected).

    Raises FleetError naming each host that cannot be asked (unreachable, or tool output that
    does not parse), so the deploy stops before touching anything.
    """
    hardware: dict[str, HostHardware] = {}
    problems: list[str] = []
    for spec in fleet.backend_hosts:
        try:
            hardware[spec.name] = inventory.get_host(spec.inventory_name).get_fact(HostGpus)
        except (ConnectError, ParseError) as exc:
            problems.append(
                f"{fleet.source}: host {spec.name}: GPU detection failed ({exc}); the router's "
                "config covers every host, so each backend host must answer (also outside "
                "--limit) or carry a gpus: override"
            )
    if problems:
        raise FleetError(problems)
    return hardware


def _value(data: dict[str, Any], defaults: dict[str, Any], key: str) -> Any:
    return data.get(key, defaults.get(key))


def check_role_data(fleet: Fleet, plan: FleetPlan, inventory: Any) -> list[str]:
    """Problems with the role knobs the plan's backends need (empty list: all good)."""
    problems: list[str] = []
    for host_plan in plan.hosts:
        pyinfra_host = inventory.get_host(host_plan.inventory_name)
        data = pyinfra_host.data.dict()
        where = f"{fleet.source}: host {host_plan.name}"
        kinds = {(inst.kind, inst.install) for inst in host_plan.instances}

        def need_sha(
            key: str, defaults: dict[str, Any], why: str, where: str = where, data: Any = data
        ) -> None:
            value = _value(data, defaults, key)
            if not value:
                problems.append(f"{where}: key {key}: not set; {why}")
            elif not SHA256.match(str(value)):
                problems.append(f"{where}: key {key}: {value!r} is not a sha256 (64 hex)")

        if ("ollama", "native") in kinds:
            need_sha(
                "ollama_release_sha256",
                OLLAMA_DEFAULTS,
                "a native Ollama install checks the release archive against it",
            )
        if any(kind == "llama-swap" for kind, _ in kinds):
            need_sha(
                "llama_swap_release_sha256",
                LLAMA_SWAP_DEFAULTS,
                "the llama-swap release archive is checked against it",
            )
        if any(kind in ("llama-swap", "llama-server") for kind, _ in kinds):
            path = _value(data, LLAMA_SERVER_DEFAULTS, "llama_server_binary_path")
            url = _value(data, LLAMA_SERVER_DEFAULTS, "llama_server_binary_url")
            if path:
                if not Path(str(path)).is_file():
                    problems.append(
                        f"{where}: key llama_server_binary_path: {path} is not a file on the "
                        "controller (build it with: bash deploy/llama_build.sh)"
                    )
            elif url:
                need_sha(
                    "llama_server_binary_sha256",
                    LLAMA_SERVER_DEFAULTS,
                    "the llama-server binary is checked against it",
                )
            else:
                problems.append(
                    f"{where}: key llama_server_binary_path: not set, and no "
                    "llama_server_binary_url either; llama-swap and llama-server hosts need "
                    "the llama-server binary"
                )
    return problems
