"""deploy/orchestrate_*: role-data checks before any host is touched, and what a host holds."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from deploy.fleet import fleet_from_inventory
from deploy.orchestrate_checks import check_role_data
from deploy.orchestrate_files import admin_token_file, host_files, router_yaml, with_role_env
from deploy.planner import FleetPlan, hardware_from_overrides, plan_fleet
from router.config import RouterConfig

EXAMPLE = "inventory/example.py"


@pytest.fixture(scope="module")
def example() -> tuple[Any, FleetPlan]:
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    with ctx_state.use(State()):
        inventory = make_inventory(EXAMPLE, cwd=os.getcwd())
    fleet = fleet_from_inventory(inventory, EXAMPLE)
    return inventory, plan_fleet(fleet, hardware_from_overrides(fleet))


def test_missing_role_data_is_named_by_host_and_key(example: tuple[Any, FleetPlan]) -> None:
    inventory, plan = example
    fleet = fleet_from_inventory(inventory, EXAMPLE)
    problems = check_role_data(fleet, plan, inventory)
    assert problems == [
        f"{EXAMPLE}: host gpu-nv-01: key ollama_release_sha256: not set; a native Ollama "
        "install checks the release archive against it",
        f"{EXAMPLE}: host gpu-amd-01: key llama_swap_release_sha256: not set; the llama-swap "
        "release archive is checked against it",
        f"{EXAMPLE}: host gpu-amd-01: key llama_server_binary_path: not set, and no "
        "llama_server_binary_url either; llama-swap and llama-server hosts need the "
        "llama-server binary",
        f"{EXAMPLE}: host cpu-01: key llama_server_binary_path: not set, and no "
        "llama_server_binary_url either; llama-swap and llama-server hosts need the "
        "llama-server binary",
    ]  # gpu-amd-02 runs Ollama in a container: no release archive to check


def test_role_extra_env_joins_the_plan_env(example: tuple[Any, FleetPlan]) -> None:
    _, plan = example
    inst = plan.host("gpu-nv-01").instances[0]
    extended = with_role_env(inst, {"ollama_extra_env": {"OLLAMA_FLASH_ATTENTION": "1"}})
    assert extended.env == {**inst.env, "OLLAMA_FLASH_ATTENTION": "1"}
    assert with_role_env(inst, {"llama_swap_extra_env": {"X": "1"}}) is inst
    env_file = next(
        f
        for f in host_files(plan, plan.host("gpu-nv-01"), {"ollama_extra_env": {"A": "b"}})
        if f.path.endswith(".env") and f.instance == inst.name
    )
    assert "\nA=b\n" in env_file.content


def test_router_yaml_points_the_service_at_its_runtime_copy_of_the_token(
    example: tuple[Any, FleetPlan],
) -> None:
    _, plan = example
    config = RouterConfig.model_validate(yaml.safe_load(router_yaml(plan)))
    assert str(config.admin_token_file) == "/run/modelfleet-router/admin-token"
    assert admin_token_file(plan) == "/etc/modelfleet/admin-token"  # root-only, on the host
    assert {b.name for b in config.backends} == {i.name for i in plan.instances}


def test_only_router_hosts_get_router_yaml(example: tuple[Any, FleetPlan]) -> None:
    _, plan = example
    roles = {host.name: {f.role for f in host_files(plan, host, {})} for host in plan.hosts}
    assert roles["router-01"] == {"router"}
    assert "router" not in roles["gpu-nv-01"] and "ollama" in roles["gpu-nv-01"]
