"""Fleet model: loading through pyinfra's inventory loader, and errors naming file/host/key."""

from __future__ import annotations

import pytest

from modelfleet.deploy.inventory import FleetError, load_fleet

CATALOG = """
model_catalog = {
    "small": {"ollama": "small:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 100, "groups": ["gpu"]},
}
"""


def test_example_inventory_loads() -> None:
    fleet = load_fleet("inventory/example.py")
    assert {h.name for h in fleet.hosts} == {
        "gpu-nv-01",
        "gpu-amd-01",
        "gpu-amd-02",
        "cpu-01",
        "router-01",
    }
    nv = fleet.host("gpu-nv-01")
    assert nv.backend is not None and nv.backend.kind == "ollama"
    assert nv.address == "gpu-nv-01.lan"
    assert nv.gpus is not None and [g.name for g in nv.gpus].count("NVIDIA GeForce RTX 4090") == 2
    assert fleet.host("gpu-amd-01").backend.kind == "llama-swap"  # type: ignore[union-attr]
    assert fleet.host("router-01").router and fleet.host("router-01").backend is None
    assert fleet.catalog["llama3.1-8b"].ollama == "llama3.1:8b"


def test_bad_host_key_names_file_host_and_key(write_inventory) -> None:
    path = write_inventory('gpu = [("g1", {"backend": "olama", "gpus": []})]\n', {"all": CATALOG})
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    assert f"{path}: host g1: key backend:" in str(err.value)


def test_bad_group_data_names_the_group_file(write_inventory) -> None:
    path = write_inventory(
        'gpu = ["g1"]\n', {"all": CATALOG, "gpu": 'backend = "ollama"\nbackend_port = 70000\n'}
    )
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    assert "group_data/gpu.py: host g1: key backend_port:" in str(err.value)


def test_catalog_errors_name_the_model_and_field(write_inventory) -> None:
    path = write_inventory(
        'gpu = [("g1", {"backend": "ollama"})]\n',
        {"all": 'model_catalog = {"m": {"ollama": "m:1b", "size_mb": 0, "kv_mb_per_1k_ctx": 1}}'},
    )
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    assert "group_data/all.py: key model_catalog.m.size_mb:" in str(err.value)


def test_a_host_listing_a_refused_catalog_entry_is_not_told_it_is_missing(
    write_inventory,
) -> None:
    # the entry's own problem is the one to fix; "'m' is not in model_catalog" misled
    path = write_inventory(
        'gpu = [("g1", {"backend": "ollama", "models": ["m", "n"]})]\n',
        {"all": 'model_catalog = {"m": {"ollama": "m:1b", "size_mb": 1000, "file": "m.gguf"}}'},
    )
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    problems = [p.split(": ", 1)[1] for p in err.value.problems]
    assert problems == [
        "key model_catalog.m.kv_mb_per_1k_ctx: Field required",
        "key model_catalog.m.file: Extra inputs are not permitted",
        "host g1: key models: 'n' is not in model_catalog",
    ]


def test_an_alias_names_one_model(write_inventory) -> None:
    """The router books an alias as its model, so the catalog may not give it two meanings."""
    catalog = """
model_catalog = {
    "a": {"ollama": "a:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 1, "aliases": ["b", "x"]},
    "b": {"ollama": "b:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 1, "aliases": ["x"]},
}
"""
    path = write_inventory('gpu = [("g1", {"backend": "ollama"})]\n', {"all": catalog})
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    assert [p.split(": ", 1)[1] for p in err.value.problems] == [
        "key model_catalog.a.aliases: 'b' is also a model's name",
        "key model_catalog.b.aliases: 'x' is also an alias of 'a'",
    ]
    assert all("group_data/all.py: key model_catalog." in p for p in err.value.problems)


def test_unknown_model_and_typo_are_reported_together(write_inventory) -> None:
    path = write_inventory(
        'gpu = [("g1", {"backend": "ollama", "models": ["smal"], "backend_prot": 1})]\n',
        {"all": CATALOG},
    )
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    assert err.value.problems == [
        f"{path}: host g1: key 'backend_prot': unknown key (did you mean 'backend_port'?)",
        f"{path}: host g1: key models: 'smal' is not in model_catalog (did you mean 'small'?)",
    ]


def test_llama_swap_host_needs_gguf_source(write_inventory) -> None:
    path = write_inventory('gpu = [("g1", {"backend": "llama-swap"})]\n', {"all": CATALOG})
    with pytest.raises(FleetError, match=r"model_catalog\.small: backend llama-swap needs a gguf"):
        load_fleet(path)


def test_router_settings_pass_through_and_secrets_are_refused(write_inventory, tmp_path) -> None:
    from modelfleet.deploy.plan import hardware_from_overrides, plan_fleet
    from modelfleet.deploy.render import router_yaml
    from modelfleet.router.config import load_config

    router = 'router = {"port": 8000, "policy": {"headroom_mb": 2048}, "max_retries": 1}\n'
    path = write_inventory(
        'gpu = [("g1", {"backend": "ollama", "gpus": [], "ram_mb": 65536})]\n',
        {"all": CATALOG + router},
    )
    fleet = load_fleet(path)
    target = tmp_path / "router.yaml"
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    target.write_text(router_yaml(plan, "modelfleet-router"))
    config = load_config(target)
    assert (config.listen, config.policy.headroom_mb, config.max_retries) == (
        "0.0.0.0:8000",
        2048,
        1,
    )

    for bad, message in (
        ('router = {"admin_token": "hunter2"}\n', "key router.admin_token: secrets never go"),
        ('router = {"queue": {"max_per_model": -1}}\n', "key router.queue.max_per_model:"),
        ('router = {"colour": "blue"}\n', "key router.colour: Extra inputs are not permitted"),
        (
            'router = {"access_log": "access.jsonl"}\n',
            "key router.access_log: 'access.jsonl' is not",
        ),
    ):
        path = write_inventory('gpu = [("g1", {"backend": "ollama"})]\n', {"all": CATALOG + bad})
        with pytest.raises(FleetError) as err:
            load_fleet(path)
        assert f"group_data/all.py: {message}" in str(err.value)
        assert "hunter2" not in str(err.value)


def test_fleet_sees_what_the_pyinfra_cli_sees() -> None:
    """load_fleet reads the same host data as `pyinfra INVENTORY debug-inventory`."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    pyinfra = Path(sys.executable).parent / "pyinfra"
    result = subprocess.run(
        [str(pyinfra), "inventory/example.py", "debug-inventory", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = {host["name"]: host for host in json.loads(result.stdout)}
    fleet = load_fleet("inventory/example.py")
    assert set(seen) == {h.inventory_name for h in fleet.hosts}
    for spec in fleet.hosts:
        data = seen[spec.inventory_name]["data"]
        assert set(spec.groups) == set(seen[spec.inventory_name]["groups"])
        assert (spec.backend.kind if spec.backend else None) == data.get("backend")
        assert spec.models == tuple(data.get("models", ()))
        assert set(fleet.catalog) == set(data["model_catalog"])
        if spec.backend:
            assert spec.backend.keep_alive == data["keep_alive"]


def test_backend_settings_are_checked_at_load(write_inventory) -> None:
    cases = [
        (
            '"backend": "ollama", "keep_alive": "forever"',
            "key keep_alive: 'forever' is not a duration like 30m, 1h, 90s, 600 or -1",
        ),
        (  # Arabic-Indic digits: Python's float() reads them, Ollama's Go parser does not
            '"backend": "ollama", "keep_alive": "\u0663m"',
            "key keep_alive: '\u0663m' is not a duration like 30m, 1h, 90s, 600 or -1",
        ),
        (
            '"backend": "llama-swap", "backend_install": "container"',
            "key backend_install: install: container is rendered for ollama only; llama-swap "
            "installs natively",
        ),
    ]
    for data, message in cases:
        path = write_inventory(f'gpu = [("g1", {{{data}, "gpus": []}})]\n', {"all": "x = 1\n"})
        with pytest.raises(FleetError) as err:
            load_fleet(path)
        assert err.value.problems == [f"{path}: host g1: {message}"]


def test_a_catalog_group_with_no_host_is_a_warning_with_a_hint(write_inventory) -> None:
    """A catalog may serve several inventories, so a group with no host here is not an
    error; but a typo of a group that has hosts silently leaves a model off the fleet, so
    the warning says which group it looks like, and that no host holds the model."""
    catalog = """
model_catalog = {
    "small": {"ollama": "s:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 1, "groups": ["gpu_nvida"]},
    "other": {"ollama": "o:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 1, "groups": ["amd"]},
    "both": {"ollama": "b:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 1,
             "groups": ["gpu_nvidia", "amd"]},
}
"""
    path = write_inventory(
        'gpu_nvidia = [("g1", {"backend": "ollama", "gpus": []})]\n', {"all": catalog}
    )
    assert load_fleet(path).warnings == (
        "model small: group 'gpu_nvida' has no host in this inventory (did you mean 'gpu_nvidia'?)",
        "model small: no backend host in this inventory holds it (groups: gpu_nvida; no backend "
        "host lists it in models)",
        "model other: group 'amd' has no host in this inventory",
        "model other: no backend host in this inventory holds it (groups: amd; no backend host "
        "lists it in models)",
        "model both: group 'amd' has no host in this inventory",
        "no host is in group 'router': the deploy sets up no router",
    )


def test_a_group_written_as_a_string_is_named(write_inventory) -> None:
    """pyinfra reads groups from lists and tuples only: ``router = "r1"`` made no group, and
    the fleet silently got no router."""
    catalog = 'model_catalog = {"m": {"ollama": "m:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 1}}'
    path = write_inventory(
        'gpu = [("g1", {"backend": "ollama", "gpus": [], "models": ["m"]})]\nrouter = "r1"\n',
        {"all": catalog},
    )
    assert load_fleet(path).warnings == (
        f"{path}: router = 'r1' is a string, and pyinfra reads a group only from a list or "
        "a tuple: write router = ['r1']",
        "no host is in group 'router': the deploy sets up no router",
    )
    listed = write_inventory(
        'gpu = [("g1", {"backend": "ollama", "gpus": [], "models": ["m"]})]\nrouter = ["g1"]\n',
        {"all": catalog},
    )
    assert load_fleet(listed).warnings == ()
