"""What ``deploy.py`` runs on each host: the fleet's context (once), then the phases in order.

The context (``context.py``) is the whole plan, validated, with every host's files; the
phases (``phases.py``) call into the roles; ``rollout.py`` plans and drains the restarts.
"""

from __future__ import annotations

from pyinfra import host

from modelfleet.deploy.apply import phases
from modelfleet.deploy.apply.context import fleet_context
from modelfleet.deploy.apply.rollout import RestartRequests
from modelfleet.deploy.render import with_role_env


def deploy_host() -> None:
    """Run the phases for the current host (called by ``deploy.py``)."""
    context = fleet_context()
    host_plan = context.plan.host(host.name)
    ops = phases.drivers_and_runtime(context, host_plan)
    if host_plan.router:
        ops += phases.withdraw_leaving_models(context)
    instances = [with_role_env(inst, host.data.dict()) for inst in host_plan.instances]
    restarts = RestartRequests()
    ops += phases.backends(context, host_plan, instances, restarts)
    ops += phases.rolling_restarts(context, instances, restarts)
    ops += phases.models(context, instances)
    if context.plan.router_state == host_plan.name:
        ops += phases.router_state(context)
    if host_plan.router:
        ops += phases.router_rollout(context)
    if host_plan.router and context.plan.router_vip:
        ops += phases.router_vip(context)
    phases.health_check(context, host_plan, ops)
