"""Before any host is touched: the hardware of every backend host.

``detect_hardware`` is the GPU-detection phase: ``roles/gpu/facts.py``'s ``HostGpus`` (a
``gpus:`` override wins, otherwise the tools run on the host) on every backend host of the
inventory, also those outside ``--limit``, because the router's config covers the whole fleet.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api.exceptions import ConnectError

from modelfleet.deploy.hardware.parsers import HostHardware, ParseError
from modelfleet.deploy.inventory import Fleet, FleetError
from modelfleet.roles.gpu.facts import HostGpus


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
