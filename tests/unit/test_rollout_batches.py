"""deploy/apply/rollout.plan_batches: restart batches that keep every model served."""

from __future__ import annotations

import os

import pytest

from modelfleet.deploy.apply.rollout import plan_batches
from modelfleet.deploy.inventory import fleet_from_inventory
from modelfleet.deploy.plan import FleetPlan, hardware_from_overrides, plan_fleet

EXAMPLE = "inventory/example.py"


@pytest.fixture(scope="module")
def plan() -> FleetPlan:
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    with ctx_state.use(State()):
        inventory = make_inventory(EXAMPLE, cwd=os.getcwd())
    fleet = fleet_from_inventory(inventory, EXAMPLE)
    return plan_fleet(fleet, hardware_from_overrides(fleet))


def serving_copies(plan: FleetPlan) -> dict[str, list[str]]:
    copies: dict[str, list[str]] = {}
    for host_plan in plan.hosts:
        for inst in host_plan.instances:
            for model in inst.models:
                copies.setdefault(model.name, []).append(inst.name)
    return copies


@pytest.mark.parametrize("keep", [1, 2])
def test_every_model_keeps_its_copies_in_every_batch(plan: FleetPlan, keep: int) -> None:
    batches = plan_batches(plan, keep)
    everyone = [inst.name for host_plan in plan.hosts for inst in host_plan.instances]
    assert sorted(name for batch in batches for name in batch) == sorted(everyone)
    for batch in batches:
        for model, where in serving_copies(plan).items():
            left = [name for name in where if name not in batch]
            # A model with enough copies keeps `keep` of them; one with fewer keeps all but one.
            assert len(left) >= min(keep, len(where) - 1), (model, batch)


def test_the_example_fleet_restarts_in_two_batches(plan: FleetPlan) -> None:
    # nomic-embed-text lives on the two NVIDIA instances and the CPU host, gemma3-27b on the
    # 4090s and both AMD hosts: the first three instances leave one copy of each.
    assert plan_batches(plan, 1) == [
        ["gpu-nv-01-rtx-4090", "gpu-nv-01-rtx-a4000", "gpu-amd-01-mi300x"],
        ["gpu-amd-02-rx-7900-xtx", "cpu-01-cpu"],
    ]
    assert len(plan_batches(plan, 2)) == 3


def test_keep_zero_is_one_batch(plan: FleetPlan) -> None:
    assert len(plan_batches(plan, 0)) == 1


def test_single_copy_models_never_share_a_batch(plan: FleetPlan) -> None:
    """With keep=10 no model has enough copies: each keeps all but one, so no batch holds
    two copies of the same model."""
    for batch in plan_batches(plan, 10):
        for model, where in serving_copies(plan).items():
            assert sum(name in batch for name in where) <= 1, (model, batch)
