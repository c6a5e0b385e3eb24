"""Each role owns its knobs: a mistyped key with a role's prefix stops the deploy before any
host is touched, naming the inventory file, the host, the key and the closest known key."""

from __future__ import annotations

import pytest

from modelfleet.deploy.inventory import load_fleet
from modelfleet.deploy.plan import hardware_from_overrides, plan_fleet
from modelfleet.deploy.render import check_host
from modelfleet.roles.knobs import ROLES, check_role_keys, role_values

EXAMPLE = "inventory/example.py"

# One typo per role: (the mistyped key, the knob it should have been).
TYPOS = {
    "ollama": ("ollama_prune_model", "ollama_prune_models"),
    "llama_swap": ("llama_swap_releas_sha256", "llama_swap_release_sha256"),
    "llama_server": ("llama_server_extra_arg", "llama_server_extra_args"),
    "router": ("router_listn", "router_user"),
    "nvidia": ("nvidia_driver_brnach", "nvidia_driver_branch"),
    "rocm": ("rocm_verison", "rocm_version"),
    "container_runtime": ("container_runtime_engin", "container_runtime_engine"),
    "redis_state": ("redis_state_passwrd", "redis_state_password"),
    "keepalived": ("keepalived_priorty", "keepalived_priority"),
}


def test_every_role_has_a_typo_case() -> None:
    assert set(TYPOS) == set(ROLES)


@pytest.mark.parametrize("role", sorted(TYPOS))
def test_a_mistyped_knob_names_file_host_key_and_closest_known_key(role: str) -> None:
    typo, meant = TYPOS[role]
    plan = plan_fleet(load_fleet(EXAMPLE), hardware_from_overrides(load_fleet(EXAMPLE)))
    host = plan.host("router-01")
    problems = check_host(f"{EXAMPLE}: host router-01", host, {typo: 1})
    assert problems == [
        f"{EXAMPLE}: host router-01: key {typo}: not a knob of the {role} role (closest known "
        f"key: {meant}); its knobs: roles/{role}/defaults.py"
    ]


def test_known_knobs_and_other_keys_pass() -> None:
    data = {"ollama_prune_models": True, "router_service": "r", "node_name": "x", "ssh_user": "u"}
    assert check_role_keys(data, "inv.py: host a") == []
    assert role_values(data)["ollama_prune_models"] is True
    assert role_values({})["ollama_prune_models"] is False


def test_fleet_keys_with_a_role_prefix_are_not_role_knobs() -> None:
    # router_state and router_vip are the fleet's keys (deploy/inventory.py), not router knobs.
    data = {"router_state": "r1", "router_vip": "10.0.0.9/24", "router_user": "u"}
    assert check_role_keys(data, "inv.py: host a") == []
