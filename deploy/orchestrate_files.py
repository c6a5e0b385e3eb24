"""What a host should hold, for the deploy and for the checks afterwards (``tests/infra``).

The deploy and the verification must agree on every byte, so both take the files from here:
the plan's instances with the role knobs applied (``<role>_extra_env``), rendered by
``deploy/render.py``, plus ``router.yaml`` on router hosts.

Example::

    fleet, plan, inventory = plan_from_inventory("inventory/local.py")
    files = host_files(plan, plan.host("gpu-nv1"), inventory.get_host("gpu-nv1").data.dict())
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy.fleet import Fleet, FleetError
from deploy.planner import BackendInstance, FleetPlan, HostPlan
from deploy.render import RenderedFile, RenderSettings, render_instance, render_router_yaml
from roles.llama_server.defaults import DEFAULTS as LLAMA_SERVER_DEFAULTS
from roles.llama_swap.defaults import DEFAULTS as LLAMA_SWAP_DEFAULTS
from roles.ollama.defaults import DEFAULTS as OLLAMA_DEFAULTS
from roles.router import runtime_token_path
from roles.router.defaults import DEFAULTS as ROUTER_DEFAULTS

ROLE_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ollama": ("ollama", OLLAMA_DEFAULTS),
    "llama-swap": ("llama_swap", LLAMA_SWAP_DEFAULTS),
    "llama-server": ("llama_server", LLAMA_SERVER_DEFAULTS),
}


def role_knob(kind: str, name: str, data: Mapping[str, Any]) -> Any:
    """A backend role's knob for a host: its data, else the role's DEFAULTS."""
    prefix, defaults = ROLE_DEFAULTS[kind]
    key = f"{prefix}_{name}"
    return data.get(key, defaults.get(key))


def with_role_env(inst: BackendInstance, data: Mapping[str, Any]) -> BackendInstance:
    """The instance with its role's ``<role>_extra_env`` added to the plan's environment."""
    extra = role_knob(inst.kind, "extra_env", data) or {}
    return inst.model_copy(update={"env": {**inst.env, **extra}}) if extra else inst


# Where the token lives when the fleet sets no router.admin_token_file (the admin API and the
# rollout's config reload need one).
DEFAULT_TOKEN_FILE = "/etc/modelfleet/admin-token"


def admin_token_file(plan: FleetPlan) -> str:
    """The root-only admin token file on router hosts."""
    return plan.router.admin_token_file or DEFAULT_TOKEN_FILE


def service_plan(plan: FleetPlan) -> FleetPlan:
    """The plan as the router service reads it.

    The fleet's ``admin_token_file`` names the root-only file on a router host; the service
    reads the copy its unit makes at start (``roles/router``), so router.yaml points there.
    """
    if not plan.router.admin_token_file:
        return plan
    runtime = runtime_token_path(ROUTER_DEFAULTS["router_service"])
    return plan.model_copy(
        update={"router": plan.router.model_copy(update={"admin_token_file": runtime})}
    )


def router_yaml(plan: FleetPlan) -> str:
    return render_router_yaml(service_plan(plan))


def host_files(plan: FleetPlan, host_plan: HostPlan, data: Mapping[str, Any]) -> list[RenderedFile]:
    """Every rendered file the host holds after a deploy (configs, env files, router.yaml)."""
    settings = RenderSettings.from_host_data(data)
    files: list[RenderedFile] = []
    for inst in host_plan.instances:
        files += render_instance(with_role_env(inst, data), plan.versions, settings)
    if host_plan.router:
        files.append(
            RenderedFile(path=settings.router_config_path, content=router_yaml(plan), role="router")
        )
    return files


def plan_from_inventory(inventory_file: str) -> tuple[Fleet, FleetPlan, Any]:
    """Fleet, plan and inventory exactly as ``deploy.py`` computes them, from the controller.

    Connects to the backend hosts for GPU detection (the ``gpus:`` override wins), like the
    deploy's first phase. Used by ``tests/infra`` to know what a deployed fleet should hold.
    """
    from pyinfra.api import Config, State
    from pyinfra.context import ctx_inventory, ctx_state
    from pyinfra_cli.inventory import make_inventory

    from deploy.fleet import fleet_from_inventory
    from deploy.orchestrate_checks import detect_hardware
    from deploy.planner import plan_fleet

    if not Path(inventory_file).is_file():
        raise FleetError([f"{inventory_file}: no such inventory file"])
    state = State()
    with ctx_state.use(state):
        inventory = make_inventory(inventory_file, cwd=os.getcwd())
    state.init(inventory, Config())
    try:
        with ctx_state.use(state), ctx_inventory.use(inventory):
            fleet = fleet_from_inventory(inventory, inventory_file)
            plan = plan_fleet(fleet, detect_hardware(fleet, inventory))
    finally:
        for pyinfra_host in inventory:
            if pyinfra_host.connected:
                pyinfra_host.disconnect()
    return fleet, plan, inventory
