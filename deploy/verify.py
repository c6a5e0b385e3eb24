"""What a deployed fleet should hold, from the controller (for ``tests/infra``).

Example::

    fleet, plan, inventory = plan_from_inventory("inventory/local.py")
    files = render_host(plan, plan.host("gpu-nv1"), inventory.get_host("gpu-nv1").data.dict())
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelfleet.deploy.inventory import Fleet, FleetError
from modelfleet.deploy.plan import FleetPlan


def plan_from_inventory(inventory_file: str) -> tuple[Fleet, FleetPlan, Any]:
    """Fleet, plan and inventory exactly as ``deploy.py`` computes them, from the controller.

    Connects to the backend hosts for GPU detection (the ``gpus:`` override wins), like the
    deploy's first phase. Used by ``tests/infra`` to know what a deployed fleet should hold.
    """
    from pyinfra.api import Config, State
    from pyinfra.context import ctx_inventory, ctx_state
    from pyinfra_cli.inventory import make_inventory

    from modelfleet.deploy.hardware.detect import detect_hardware
    from modelfleet.deploy.inventory import fleet_from_inventory
    from modelfleet.deploy.plan import plan_fleet

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
