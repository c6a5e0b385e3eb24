"""Rolling backend restarts: in batches that keep every model served, each one drained.

A backend role does not restart its units itself during a fleet deploy: it hands each unit
and the operations whose change calls for a restart to :class:`RestartRequests`, and the
*rolling* phase (after every host's files are in place, before the models phase) restarts
them with ``roles.drain.drained_restart``: drained in the router, restarted, healthy,
undrained. A change that needs no restart (llama-server's presets, re-read in place) drains
nothing, and a converged fleet restarts nothing.

The batches come from the whole plan, before any host is touched (:func:`plan_batches`): as
many instances per batch as still leave ``rollout_keep_copies`` serving copies (default 1) of
every model that has more copies than that. Batch ``k`` runs on every host before batch
``k + 1`` starts anywhere: pyinfra orders operations by where they are called, and the
``host.loop`` positions (batch, member) are part of that order on every host. Each operation's
name says its batch, so the deploy's output shows which batch is running.

Knobs (host data, e.g. ``inventory/group_data/all.py``): see :data:`DEFAULTS`.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.operations.util import any_changed

from modelfleet.deploy.plan import BackendInstance, FleetPlan, HostPlan
from modelfleet.roles.addresses import local_host
from modelfleet.roles.drain import drained_restart

DEFAULTS: dict[str, Any] = {
    # Serving copies every model keeps while a batch restarts (models with fewer copies in
    # the whole fleet cannot keep them: their backend restarts alone in its batch). 0: one
    # batch, every backend at once.
    "rollout_keep_copies": 1,
    # Seconds a drained backend's requests in flight get to finish before its restart goes
    # ahead anyway (the deploy's output then says how many were cut short).
    "rollout_drain_timeout_s": 120,
}


def knob(data: Mapping[str, Any], name: str) -> Any:
    return data.get(name, DEFAULTS[name])


def check_knobs(data: Mapping[str, Any], where: str) -> list[str]:
    """Problems with one host's ``rollout_*`` keys: not a knob (a typo would silently keep the
    default), or not a number >= 0. ``where`` starts each line (``"inv.py: host gpu-01"``).

    Example::

        check_knobs({"rollout_keep_copie": 2}, "inv.py: host a")
        # ["inv.py: host a: key rollout_keep_copie: not a rollout knob (closest known key:
        #   rollout_keep_copies); its knobs: deploy/apply/rollout.py DEFAULTS"]
    """
    problems = []
    for key, value in data.items():
        if not key.startswith("rollout_"):
            continue
        if key not in DEFAULTS:
            closest = difflib.get_close_matches(key, list(DEFAULTS), n=1, cutoff=0.0)
            problems.append(
                f"{where}: key {key}: not a rollout knob (closest known key: {closest[0]}); "
                "its knobs: deploy/apply/rollout.py DEFAULTS"
            )
            continue
        number = int if key == "rollout_keep_copies" else float  # a count; seconds
        try:  # what the deploy does with it: int(...) or float(...)
            ok = not isinstance(value, bool) and number(value) >= 0
            ok = ok and (number is float or float(value) == int(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"{where}: key {key}: expected a number >= 0, got {value!r}")
    return problems


def plan_batches(plan: FleetPlan, keep_copies: int) -> list[list[str]]:
    """Instance names in restart batches, in plan order.

    An instance joins the first batch after which every model it serves still has
    ``keep_copies`` copies outside the batch. A model with no more copies than that in the
    whole fleet cannot keep them; it keeps what it can: no two of its copies share a batch.
    ``keep_copies=0``: one batch.

    Example::

        plan_batches(plan, 1)   # [["gpu-nv1-rtx-4090", "gpu-amd1-mi300x"], ["cpu-llama1-cpu"]]
    """
    instances = [inst for host_plan in plan.hosts for inst in host_plan.instances]
    if keep_copies <= 0:
        return [[inst.name for inst in instances]] if instances else []
    copies = Counter(model.name for inst in instances for model in inst.models)
    batches: list[tuple[list[str], Counter[str]]] = []
    for inst in instances:
        served = {model.name for model in inst.models}
        for names, down in batches:
            if all(
                copies[m] <= keep_copies or copies[m] - down[m] - 1 >= keep_copies for m in served
            ) and not any(copies[m] <= keep_copies and down[m] for m in served):
                names.append(inst.name)
                down.update(served)
                break
        else:
            batches.append(([inst.name], Counter(served)))
    return [names for names, _ in batches]


@dataclass
class RestartRequests:
    """The units a host's backend roles want restarted, with what triggers each restart."""

    triggers: dict[str, list[OperationMeta]] = field(default_factory=dict)

    def __call__(self, service: str, triggers: list[OperationMeta]) -> None:
        self.triggers[service] = triggers


@dataclass(frozen=True)
class RouterAdmin:
    """Where the deploy asks the router to drain: its host (inventory name), port, token, and
    the address it is bound to (``router.bind``: where it is called on its host)."""

    host: str
    port: int
    token_path: str
    bind: str = "0.0.0.0"


def rolling_restarts(
    batches: Sequence[Sequence[str]],
    instances: Sequence[BackendInstance],
    requests: RestartRequests,
    health_paths: Mapping[str, str],
    router: RouterAdmin | None,
    health_timeout_s: Mapping[str, int],
) -> list[OperationMeta]:
    """This host's drained restarts, each at its batch's place in the fleet-wide order."""
    data = host.data.dict()
    mine = {inst.name: inst for inst in instances}
    ops: list[OperationMeta] = []
    for number in host.loop(range(len(batches))):
        members = [name for name in batches[number] if name in mine]
        for name in host.loop(members):
            inst = mine[name]
            triggers = requests.triggers.get(inst.service_name)
            if not triggers:
                continue
            ops.append(
                drained_restart(
                    name=(
                        f"Batch {number + 1}/{len(batches)} ({', '.join(batches[number])}): "
                        f"restart {inst.service_name}, drained in the router"
                    ),
                    service=inst.service_name,
                    backend=inst.name,
                    health_url=(
                        f"http://{local_host(inst.bind)}:{inst.port}{health_paths[inst.kind]}"
                    ),
                    router_host=router.host if router else None,
                    router_port=router.port if router else 11434,
                    router_bind=router.bind if router else "0.0.0.0",
                    token_path=router.token_path if router else "",
                    drain_timeout_s=float(knob(data, "rollout_drain_timeout_s")),
                    health_timeout_s=health_timeout_s[inst.kind],
                    _if=any_changed(*triggers),
                )
            )
    return ops


def router_admin(plan: FleetPlan, token_path: str) -> RouterAdmin | None:
    """The router host the deploy drains through (the first, if several), or None."""
    routers: list[HostPlan] = [h for h in plan.hosts if h.router]
    if not routers:
        return None
    return RouterAdmin(routers[0].inventory_name, plan.router.port, token_path, plan.router.bind)
