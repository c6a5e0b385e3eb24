"""The whole fleet's context, decided on the controller before any host is touched.

pyinfra executes ``deploy.py`` once per host during its *prepare* stage, and runs nothing on any
host until every host is prepared. The first call here therefore builds and validates the plan
for the **whole** inventory (``--limit`` only narrows where operations run): the fleet model,
the hardware of every backend host, the placement, every file each host will get and the
router's config. Any problem stops the deploy right there, listing every problem, with zero
operations run.

The phases, in the order pyinfra executes them across hosts:

1. gpu detection     facts (before the plan; hosts with a ``gpus:`` override skip them)
2. drivers/runtime   roles.nvidia / roles.rocm / roles.container_runtime, where the host needs them
   models leaving    on router hosts: the running router stops routing each model that leaves
                     a backend, before that backend unloads or prunes it (roles/router)
3. backends          roles.ollama / roles.llama_swap / roles.llama_server: binaries, units, configs
4. rolling restarts  the units whose unit, config or release changed, in batches that keep
                     every model served, each drained in the router meanwhile
                     (deploy/apply/rollout.py)
5. models            pulls and verified GGUF downloads; pruning
6. router state      roles.redis_state on the ``router_state`` host (fleets with replicas)
7. router rollout    roles.router on hosts of the ``router`` group, one replica at a time
8. router VIP        roles.keepalived on the router hosts (fleets with a ``router_vip``)
9. health check      every backend instance answers; the router answers /readyz

A host whose operation fails drops out of the run and is reported (``FailureReport``); the
others carry on.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyinfra import inventory, logger, state
from pyinfra.api import BaseStateCallback
from pyinfra.api.exceptions import PyinfraError

from modelfleet.deploy.apply.rollout import (
    RouterAdmin,
    check_knobs,
    knob,
    plan_batches,
    router_admin,
)
from modelfleet.deploy.hardware.detect import detect_hardware
from modelfleet.deploy.inventory import Fleet, FleetError, fleet_from_inventory
from modelfleet.deploy.plan import FleetPlan, PlanError, plan_fleet
from modelfleet.deploy.render import RenderedFile, admin_token_file, check_host, render_host
from modelfleet.roles.keepalived.facts import InterfaceOf
from modelfleet.roles.secrets import controller_secret


@dataclass
class FleetContext:
    """Everything decided on the controller before any host is touched."""

    fleet: Fleet
    plan: FleetPlan
    files: dict[str, list[RenderedFile]]  # per node name: what deploy/render.py made for it
    batches: list[list[str]]  # instance names per rolling-restart batch, whole fleet
    router: RouterAdmin | None  # where backends are drained (None: the fleet has no router)
    failures: FailureReport = field(default_factory=lambda: FailureReport())
    # Secrets several hosts share (roles/secrets.py); None where the fleet has no such part.
    redis_password: str | None = None
    vrrp_password: str | None = None


# One context per pyinfra State: deploy.py runs once per host in the same process.
_CONTEXTS: dict[int, FleetContext] = {}


def inventory_file() -> str:
    """The inventory file pyinfra was given (``MODELFLEET_INVENTORY`` overrides it)."""
    if os.environ.get("MODELFLEET_INVENTORY"):
        return os.environ["MODELFLEET_INVENTORY"]
    deploy_files = {"deploy.py"}
    for arg in sys.argv[1:]:
        if arg.endswith(".py") and Path(arg).is_file() and Path(arg).name not in deploy_files:
            return arg
    return "inventory"


def fleet_context() -> FleetContext:
    """Build (once per run) and validate the whole fleet's plan; raise PyinfraError if bad."""
    key = id(state)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = _build_context()
    return _CONTEXTS[key]


def _build_context() -> FleetContext:
    source = inventory_file()
    try:
        fleet = fleet_from_inventory(inventory, source)
        hardware = detect_hardware(fleet, inventory)
        plan = plan_fleet(fleet, hardware)
        data = {h.name: inventory.get_host(h.inventory_name).data.dict() for h in plan.hosts}
        problems = [
            problem
            for h in plan.hosts
            for problem in check_host(f"{fleet.source}: host {h.name}", h, data[h.name])
            + check_knobs(data[h.name], f"{fleet.source}: host {h.name}")
        ]
        if problems:
            raise FleetError(problems)
        if plan.router_vip:
            data.update(_with_vip_interfaces(plan, data))
        # Render every host's files now: a template or value problem stops the deploy here.
        files = {h.name: render_host(plan, h, data[h.name]) for h in plan.hosts}
        redis_password, vrrp_password = _shared_secrets(plan, data)
    except (FleetError, PlanError, ValueError) as exc:
        # Nothing has run on any host yet: stop the whole deploy with every problem listed.
        raise PyinfraError(f"the deploy was not started, the plan is invalid:\n{exc}") from None
    # Fleet-wide knob (inventory/group_data/all.py): any host's data holds it.
    first = inventory.get_host(plan.hosts[0].inventory_name) if plan.hosts else None
    keep_copies = int(knob(first.data.dict() if first else {}, "rollout_keep_copies"))
    context = FleetContext(
        fleet,
        plan,
        files,
        batches=plan_batches(plan, keep_copies),
        router=router_admin(plan, admin_token_file(plan)),
        redis_password=redis_password,
        vrrp_password=vrrp_password,
    )
    state.add_callback_handler(context.failures)
    return context


def _with_vip_interfaces(plan: FleetPlan, data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Router hosts' data with ``keepalived_interface`` asked from the host where not set."""
    updated: dict[str, Any] = {}
    for router in plan.router_hosts:
        if data[router.name].get("keepalived_interface"):
            continue
        target = inventory.get_host(router.inventory_name)
        interface = target.get_fact(InterfaceOf, address=router.address)
        updated[router.name] = {**data[router.name], "keepalived_interface": interface}
    return updated


def _shared_secrets(
    plan: FleetPlan, data: dict[str, dict[str, Any]]
) -> tuple[str | None, str | None]:
    """The Redis and VRRP passwords: from the inventory data, else kept on the controller."""
    redis_password = vrrp_password = None
    if plan.router_state:
        given = data[plan.router_state].get("redis_state_password")
        redis_password = str(given or controller_secret(plan.fleet, "redis-password"))
    if plan.router_vip:
        given = data[plan.router_hosts[0].name].get("keepalived_auth_pass")
        vrrp_password = str(given or controller_secret(plan.fleet, "vrrp-password", 8))
    return redis_password, vrrp_password


class FailureReport(BaseStateCallback):
    """Logs each host that fails, with the phase and operation, so the others' run goes on."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}

    def operation_host_error(  # type: ignore[override]
        self, state: Any, host: Any, op_hash: Any, retry_count: int = 0, max_retries: int = 0
    ) -> None:
        names = state.get_op_meta(op_hash).names
        name = ", ".join(sorted(names)) or op_hash
        if host.name not in self.failed:
            self.failed[host.name] = name
            logger.error(
                "modelfleet: host %s failed at %r; it is left out of the rest of this run, "
                "the other hosts carry on",
                host.name,
                name,
            )
