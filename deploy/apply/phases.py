"""The phases of ``deploy.py`` for one host, each a call into the roles (see run.py).

Every function runs inside pyinfra's prepare stage for the current host and returns the
operations whose changes matter to the health check at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from pyinfra import host
from pyinfra.api.operation import OperationMeta

from modelfleet.deploy.apply.context import FleetContext
from modelfleet.deploy.apply.rollout import RestartRequests
from modelfleet.deploy.apply.rollout import knob as rollout_knob
from modelfleet.deploy.apply.rollout import rolling_restarts as drained_batches
from modelfleet.deploy.plan import BackendInstance, HostPlan
from modelfleet.deploy.render import RenderedFile, admin_token_file, role_knob
from modelfleet.roles import (
    health,
    keepalived,
    llama_server,
    llama_swap,
    ollama,
    redis_state,
    system,
)
from modelfleet.roles import router as router_role
from modelfleet.roles.addresses import local_host
from modelfleet.roles.units import retired_units

# Per backend kind: the role and the path that says "alive".
ROLES: dict[str, tuple[Any, str]] = {
    "ollama": (ollama, "/api/version"),
    "llama-swap": (llama_swap, "/health"),
    "llama-server": (llama_server, "/health"),
}
DEFAULT_HEALTH_TIMEOUT_S = 120


def _knob(kind: str, name: str) -> Any:
    return role_knob(kind, name, host.data.dict())


def _by_kind(instances: Sequence[BackendInstance]) -> dict[str, list[BackendInstance]]:
    grouped: dict[str, list[BackendInstance]] = {}
    for inst in instances:
        grouped.setdefault(inst.kind, []).append(inst)
    return grouped


def drivers_and_runtime(context: FleetContext, host_plan: HostPlan) -> list[OperationMeta]:
    """GPU drivers and the container runtime, where this host needs them (roles/system.py)."""
    system.drivers_and_runtime(
        needs_container_engine=any(inst.install == "container" for inst in host_plan.instances)
    )
    return []


def backends(
    context: FleetContext,
    host_plan: HostPlan,
    instances: Sequence[BackendInstance],
    restarts: RestartRequests | None = None,
) -> list[OperationMeta]:
    """Binaries, units and configs; the restarts they call for go to ``restarts`` (when given)
    for the rolling phase, instead of happening at once."""
    rendered: dict[str, list[RenderedFile]] = {}
    for file in context.files[host_plan.name]:
        if file.instance:
            rendered.setdefault(file.instance, []).append(file)
    # Instances the plan dropped (other GPUs, another backend kind) go first: they hold ports.
    ops: list[OperationMeta] = [
        retired_units(
            name="Retire backend units the plan no longer has",
            prefixes=[f"{kind}-" for kind in ROLES],
            keep=[inst.service_name for inst in instances],
        )
    ]
    for kind, group in _by_kind(instances).items():
        role = ROLES[kind][0]
        ops += role.backend(
            instances=group,
            rendered={inst.name: rendered[inst.name] for inst in group},
            versions=context.plan.versions,
            restart=restarts,
        )
    return ops


def rolling_restarts(
    context: FleetContext, instances: Sequence[BackendInstance], restarts: RestartRequests
) -> list[OperationMeta]:
    """The restarts the backends phase asked for, drained and in the fleet's batches."""
    timeouts = {
        kind: int(_knob(kind, "health_timeout_s") or DEFAULT_HEALTH_TIMEOUT_S) for kind in ROLES
    }
    return drained_batches(
        context.batches,
        instances,
        restarts,
        health_paths={kind: path for kind, (_, path) in ROLES.items()},
        router=context.router,
        health_timeout_s=timeouts,
    )


def models(context: FleetContext, instances: Sequence[BackendInstance]) -> list[OperationMeta]:
    ops: list[OperationMeta] = []
    for kind, group in _by_kind(instances).items():
        ops += ROLES[kind][0].models(instances=group)
    return ops


def _router_files(context: FleetContext) -> list[RenderedFile]:
    """This router host's files: router.yaml first, then its units."""
    node = context.plan.host(host.name).name
    files = [f for f in context.files[node] if f.role == "router"]
    return sorted(files, key=lambda f: not f.path.endswith(".yaml"))


def withdraw_leaving_models(context: FleetContext) -> list[OperationMeta]:
    """On the router host, before any backend changes: models that leave a backend stop
    being routed there (the backends phase may unload them, the models phase prune them)."""
    ops = router_role.withdraw_leaving_models(
        config=_router_files(context)[0],
        token_path=admin_token_file(context.plan),
        drain_timeout_s=float(rollout_knob(host.data.dict(), "rollout_drain_timeout_s")),
    )
    return cast(list[OperationMeta], ops)


def router_rollout(context: FleetContext) -> list[OperationMeta]:
    """The router release and config; with several router hosts one replica at a time (the
    role's restarting operations run host by host, each waiting for ``/readyz``)."""
    config, *units = _router_files(context)
    ops = router_role.rollout(
        config=config,
        units=units,
        token_path=admin_token_file(context.plan),
        shared_password=context.redis_password,
    )
    return cast(list[OperationMeta], ops)


def _role_files(context: FleetContext, role: str) -> list[RenderedFile]:
    node = context.plan.host(host.name).name
    return [f for f in context.files[node] if f.role == role]


def router_state(context: FleetContext) -> list[OperationMeta]:
    """Redis for the router replicas, on the fleet's ``router_state`` host."""
    assert context.redis_password is not None
    ops = redis_state.server(
        rendered=_role_files(context, "redis_state"), password=context.redis_password
    )
    return cast(list[OperationMeta], ops)


def router_vip(context: FleetContext) -> list[OperationMeta]:
    """keepalived and the fleet's VIP, on a router host (after its router is ready)."""
    assert context.vrrp_password is not None
    ops = keepalived.vip(
        rendered=_role_files(context, "keepalived"), auth_pass=context.vrrp_password
    )
    return cast(list[OperationMeta], ops)


def health_check(
    context: FleetContext, host_plan: HostPlan, changes: Sequence[OperationMeta]
) -> None:
    """Every instance answers on its port; the router (if here) answers /readyz. Each is
    asked at its bind address (127.0.0.1 for a wildcard): the only one it accepts."""
    for inst in host_plan.instances:
        path = ROLES[inst.kind][1]
        timeout = _knob(inst.kind, "health_timeout_s") or DEFAULT_HEALTH_TIMEOUT_S
        health.answers(
            name=f"Health check {inst.service_name}",
            url=f"http://{local_host(inst.bind)}:{inst.port}{path}",
            what=f"{inst.kind} instance {inst.name}",
            after=changes,
            timeout_s=int(timeout),
        )
    if host_plan.router:
        router = context.plan.router
        health.answers(
            name="Health check: router /readyz",
            url=f"http://{local_host(router.bind)}:{router.port}/readyz",
            what="the modelfleet router",
            after=changes,
            timeout_s=int(host.data.get("router_health_timeout_s", 60)),
        )
