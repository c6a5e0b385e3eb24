"""testinfra checks for ANY deployed fleet: they know the plan from the inventory.

    pytest tests/infra --inventory inventory/local.py \
        --hosts=podman://modelfleet-gpu-nv1,podman://modelfleet-gpu-amd1,podman://modelfleet-cpu-llama1
    pytest tests/infra --inventory inventory/prod.py \
        --hosts=ssh://ops@gpu-01,ssh://ops@router-01 --sudo

``--inventory`` (or ``MODELFLEET_INVENTORY``) names the inventory the fleet was deployed from;
the plan is computed exactly as ``deploy.py`` does (``deploy/verify.py``), GPU
detection included. Each ``--hosts`` entry is matched to its plan host by hostname, node name,
inventory name or address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

from modelfleet.deploy.inventory import Fleet
from modelfleet.deploy.plan import FleetPlan, HostPlan
from modelfleet.deploy.verify import plan_from_inventory
from modelfleet.roles.keepalived.facts import InterfaceOf


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--inventory",
        default=os.environ.get("MODELFLEET_INVENTORY"),
        help="the inventory the fleet was deployed from (env MODELFLEET_INVENTORY)",
    )


@dataclass
class Deployed:
    """The fleet as the deploy planned it."""

    fleet: Fleet
    plan: FleetPlan
    inventory: Any

    def data(self, host_plan: HostPlan) -> dict[str, Any]:
        return dict(self.inventory.get_host(host_plan.inventory_name).data.dict())

    def match(self, names: set[str]) -> HostPlan | None:
        for host_plan in self.plan.hosts:
            candidates = {host_plan.name, host_plan.inventory_name, host_plan.address}
            candidates.add(host_plan.inventory_name.rsplit("/", 1)[-1])
            if candidates & names:
                return host_plan
        return None


@pytest.fixture(scope="session")
def deployed(request: pytest.FixtureRequest) -> Deployed:
    # The option is missing when these fixtures are imported elsewhere (Molecule's verify).
    inventory_file = request.config.getoption("inventory", None) or os.environ.get(
        "MODELFLEET_INVENTORY"
    )
    if not inventory_file:
        pytest.fail("tests/infra needs --inventory INVENTORY (or MODELFLEET_INVENTORY)")
    fleet, plan, inventory = plan_from_inventory(str(inventory_file))
    return Deployed(fleet, plan, inventory)


@pytest.fixture
def node_data(host: Any, node: HostPlan, deployed: Deployed) -> dict[str, Any]:
    """The host's inventory data plus what the deploy asks the host itself: on a router host
    of a fleet with ``router_vip``, the interface that holds its address
    (``keepalived_interface``), when the inventory leaves it to the deploy. The same fact,
    ``InterfaceOf``, answers it here, through testinfra."""
    data = deployed.data(node)
    if node.router and deployed.plan.router_vip and not data.get("keepalived_interface"):
        fact = InterfaceOf()
        found = host.run(fact.command(node.address))
        data["keepalived_interface"] = fact.process(found.stdout.splitlines())
    return data


@pytest.fixture
def node(host: Any, deployed: Deployed) -> HostPlan:
    """The plan's view of the testinfra ``host`` under test."""
    names = {host.backend.hostname}
    names.add(host.backend.hostname.rsplit("@", 1)[-1])
    for command in ("hostname", "hostname -f"):
        result = host.run(command)
        if result.rc == 0:
            names.add(result.stdout.strip())
    found = deployed.match(names)
    if found is None:
        pytest.fail(f"testinfra host {host.backend.hostname} ({sorted(names)}) is not in the plan")
    return found
