"""Before any host is touched: the role knobs of every host, and what each host holds."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from modelfleet.deploy.inventory import fleet_from_inventory
from modelfleet.deploy.plan import FleetPlan, hardware_from_overrides, plan_fleet
from modelfleet.deploy.render import (
    admin_token_file,
    check_host,
    render_host,
    router_yaml,
    with_role_env,
)
from modelfleet.router.config import RouterConfig

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


def data_of(example: tuple[Any, FleetPlan], host: str) -> dict[str, Any]:
    inventory, plan = example
    return dict(inventory.get_host(plan.host(host).inventory_name).data.dict())


def test_missing_role_data_is_named_by_host_and_key(example: tuple[Any, FleetPlan]) -> None:
    _, plan = example
    problems = [
        problem
        for host in plan.hosts
        for problem in check_host(f"{EXAMPLE}: host {host.name}", host, data_of(example, host.name))
    ]
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
        for f in render_host(plan, plan.host("gpu-nv-01"), {"ollama_extra_env": {"A": "b"}})
        if f.path.endswith(".env") and f.instance == inst.name
    )
    assert "\nA=b\n" in env_file.content


def test_router_yaml_points_the_service_at_its_runtime_copy_of_the_token(
    example: tuple[Any, FleetPlan],
) -> None:
    _, plan = example
    config = RouterConfig.model_validate(yaml.safe_load(router_yaml(plan, "modelfleet-router")))
    assert str(config.admin_token_file) == "/run/modelfleet-router/admin-token"
    assert admin_token_file(plan) == "/etc/modelfleet/admin-token"  # root-only, on the host
    assert {b.name for b in config.backends} == {i.name for i in plan.instances}


def test_a_renamed_router_service_reads_the_token_where_its_unit_puts_it(
    example: tuple[Any, FleetPlan],
) -> None:
    """router.yaml and the unit come from the same host knob, so they cannot disagree."""
    _, plan = example
    files = render_host(plan, plan.host("router-01"), {"router_service": "mf-router"})
    by_name = {f.path.rsplit("/", 1)[-1]: f for f in files}
    assert set(by_name) == {"router.yaml", "mf-router.service", "mf-router.socket"}
    config = yaml.safe_load(by_name["router.yaml"].content)
    assert config["admin_token_file"] == "/run/mf-router/admin-token"
    unit = by_name["mf-router.service"].content
    assert "/etc/modelfleet/admin-token /run/mf-router/admin-token" in unit
    assert "RuntimeDirectory=mf-router\n" in unit


def test_only_router_hosts_get_router_files(example: tuple[Any, FleetPlan]) -> None:
    _, plan = example
    roles = {host.name: {f.role for f in render_host(plan, host, {})} for host in plan.hosts}
    assert roles["router-01"] == {"router"}
    assert "router" not in roles["gpu-nv-01"] and "ollama" in roles["gpu-nv-01"]


def test_every_backend_instance_gets_its_unit(example: tuple[Any, FleetPlan]) -> None:
    _, plan = example
    for host in plan.hosts:
        paths = {f.path for f in render_host(plan, host, {})}
        for inst in host.instances:
            assert f"/etc/systemd/system/{inst.service_name}.service" in paths, inst.name
