"""Rendering: golden files for inventory/example.py, each file parsed back the way its consumer
reads it, determinism, and "a file changes only when its own inputs change".

Refresh the golden files after an intended change with:

    MODELFLEET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import pytest
import yaml

from modelfleet.deploy.inventory import load_fleet
from modelfleet.deploy.plan import FleetPlan, hardware_from_overrides, plan_fleet
from modelfleet.deploy.render import (
    RenderedFile,
    _llama_swap_ttl,
    parse_back,
    render_host,
    router_yaml,
)
from modelfleet.router.config import RouterConfig, load_config

GOLDEN = Path(__file__).parent / "golden" / "example"
UPDATE = os.environ.get("MODELFLEET_UPDATE_GOLDEN") == "1"


def example_plan(catalog_changes: dict[str, dict[str, object]] | None = None) -> FleetPlan:
    fleet = load_fleet("inventory/example.py")
    if catalog_changes:
        catalog = {
            name: model.model_copy(update=catalog_changes.get(name, {}))
            for name, model in fleet.catalog.items()
        }
        fleet = fleet.model_copy(update={"catalog": catalog})
    return plan_fleet(fleet, hardware_from_overrides(fleet))


def render_fleet(plan: FleetPlan) -> dict[str, list[RenderedFile]]:
    """Every host's files with the roles' defaults (the example inventory sets no knobs)."""
    return {host.name: render_host(plan, host, {}) for host in plan.hosts}


def rendered_tree(plan: FleetPlan) -> dict[str, str]:
    """golden-relative path -> content, for every file of every host (role defaults)."""
    return {
        f"{host}/{file.path.lstrip('/')}": file.content
        for host, files in render_fleet(plan).items()
        for file in files
    }


def test_golden_files() -> None:
    tree = rendered_tree(example_plan())
    if UPDATE:
        for path, content in tree.items():
            (GOLDEN / path).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / path).write_text(content)
    on_disk = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file()}
    assert on_disk == set(tree), "golden files differ from what is rendered (stale or missing)"
    for path, content in tree.items():
        assert (GOLDEN / path).read_text() == content, f"{path} differs from its golden file"


def files_by_role(plan: FleetPlan) -> dict[str, list[RenderedFile]]:
    grouped: dict[str, list[RenderedFile]] = {}
    for files in render_fleet(plan).values():
        for file in files:
            grouped.setdefault(file.role, []).append(file)
    return grouped


def test_ollama_files_parse_back() -> None:
    plan = example_plan()
    files = {f.path: f for f in files_by_role(plan)["ollama"]}
    for inst in (i for i in plan.instances if i.kind == "ollama"):
        env = parse_back(files[f"/etc/ollama/{inst.service_name}.env"])
        assert env["OLLAMA_HOST"] == f"0.0.0.0:{inst.port}"
        assert env["OLLAMA_MAX_LOADED_MODELS"] == str(inst.max_loaded)
        assert env["OLLAMA_NUM_PARALLEL"] == str(inst.slots)
        unit = parse_back(files[f"/etc/systemd/system/{inst.service_name}.service"])
        assert unit["Install"]["WantedBy"] == "multi-user.target"
        exec_start = unit["Service"]["ExecStart"]
        if inst.install == "native":
            assert unit["Service"]["EnvironmentFile"] == f"/etc/ollama/{inst.service_name}.env"
            assert env["OLLAMA_MODELS"] == inst.models_dir
            assert exec_start == "/usr/local/bin/ollama serve"
            assert env["CUDA_VISIBLE_DEVICES"] == ",".join(inst.device_ids)
        else:
            assert env["OLLAMA_MODELS"] == "/root/.ollama/models"
            assert f"--env-file /etc/ollama/{inst.service_name}.env" in exec_start
            assert f"--volume {inst.models_dir}:/root/.ollama/models:z" in exec_start
            assert "--device /dev/kfd" in exec_start and "--device /dev/dri" in exec_start
            assert "--group-add" not in exec_start  # root in the container; see ollama_rocm_groups
            assert env["ROCR_VISIBLE_DEVICES"] == "0,1" and env["HIP_VISIBLE_DEVICES"] == "0,1"


def test_rocm_container_groups_when_asked() -> None:
    plan = example_plan()
    files = render_host(plan, plan.host("gpu-amd-02"), {"ollama_rocm_groups": ["44", "992"]})
    unit = next(f for f in files if f.path.endswith(".service"))
    assert "--group-add 44" in unit.content and "--group-add 992" in unit.content


def test_cuda_container_unit_uses_cdi_devices() -> None:
    fleet = load_fleet("inventory/example.py")
    hosts = tuple(
        h.model_copy(update={"backend": h.backend.model_copy(update={"install": "container"})})
        if h.name == "gpu-nv-01" and h.backend
        else h
        for h in fleet.hosts
    )
    fleet = fleet.model_copy(update={"hosts": hosts})
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    unit = next(f for f in files_by_role(plan)["ollama"] if f.path.endswith("rtx-4090.service"))
    exec_start = parse_back(unit)["Service"]["ExecStart"]
    assert "--device nvidia.com/gpu=0" in exec_start and "--device nvidia.com/gpu=1" in exec_start
    assert "docker.io/ollama/ollama:" in exec_start
    env = next(f for f in files_by_role(plan)["ollama"] if f.path.endswith("rtx-4090.env"))
    assert "CUDA_VISIBLE_DEVICES" not in parse_back(env)  # CDI already limits the devices


def test_llama_swap_config_parses_back() -> None:
    plan = example_plan()
    (inst,) = (i for i in plan.instances if i.kind == "llama-swap")
    (file,) = (f for f in files_by_role(plan)["llama_swap"] if f.path.endswith(".yaml"))
    config = yaml.safe_load(file.content)
    assert set(config["models"]) == {m.name for m in inst.models}
    for model in inst.models:
        entry = config["models"][model.name]
        assert entry["cmd"].startswith("${server} --port ${PORT} ")
        assert f"--model {model.gguf_path}" in entry["cmd"]
        assert f"--ctx-size {model.ctx * model.slots} --parallel {model.slots}" in entry["cmd"]
        assert entry["proxy"] == "http://127.0.0.1:${PORT}"
        assert entry["ttl"] == 1800
        assert entry.get("aliases", []) == list(model.aliases)
        assert "ROCR_VISIBLE_DEVICES=0" in entry["env"]
    assert config["macros"]["server"].endswith("llama-server --host 127.0.0.1")
    group = config["groups"][inst.slug]
    assert group["members"] == [m.name for m in inst.models]
    assert group["swap"] is (inst.max_loaded < len(inst.models))


def test_llama_swap_standin_accepts_the_config(tmp_path: Path) -> None:
    """The project's llama-swap stand-in validates configs like llama-swap does."""
    from modelfleet.deploy.lab.standins.llama_swap import load_config as load_llama_swap_config

    plan = example_plan()
    (inst,) = (i for i in plan.instances if i.kind == "llama-swap")
    (file,) = (f for f in files_by_role(plan)["llama_swap"] if f.path.endswith(".yaml"))
    path = tmp_path / "config.yaml"
    path.write_text(file.content)
    config = load_llama_swap_config(path)
    assert set(config.models) == {m.name for m in inst.models}
    gemma = config.models["gemma3-270m"]
    assert gemma.cmd[:3] == ["/opt/llama-server/current/llama-server", "--host", "127.0.0.1"]
    assert gemma.proxy == f"http://127.0.0.1:{gemma.cmd[gemma.cmd.index('--port') + 1]}"
    assert gemma.aliases == ["tiny"] and gemma.ttl == 1800


def test_llama_server_presets_parse_back() -> None:
    plan = example_plan()
    (inst,) = (i for i in plan.instances if i.kind == "llama-server")
    (file,) = (f for f in files_by_role(plan)["llama_server"] if f.path.endswith(".ini"))
    presets = parse_back(file)
    assert isinstance(presets, configparser.ConfigParser)
    assert presets["__top__"]["version"] == "1"
    assert presets["*"]["n-gpu-layers"] == "0"
    sections = [s for s in presets.sections() if s not in ("__top__", "*")]
    assert sections == [m.name for m in inst.models]
    for model in inst.models:
        section = presets[model.name]
        assert section["model"] == model.gguf_path
        assert section["ctx-size"] == str(model.ctx * model.slots)
        assert section["parallel"] == str(model.slots)
        assert section["load-on-startup"] == "false"


def test_router_yaml_is_the_plans_router_config(tmp_path: Path) -> None:
    plan = example_plan()
    path = tmp_path / "router.yaml"
    path.write_text(router_yaml(plan, "modelfleet-router"))
    config = load_config(path)
    runtime_token = "/run/modelfleet-router/admin-token"
    planned = plan.router_config().model_dump()
    assert config == RouterConfig.model_validate({**planned, "admin_token_file": runtime_token})
    assert isinstance(config, RouterConfig)
    assert {b.name for b in config.backends} == {i.name for i in plan.instances}
    assert "admin_token:" not in path.read_text()  # only the file path, never a secret


@pytest.mark.parametrize(
    "inventory",
    [
        # a backend host none of whose groups holds a model (Ollama starts empty)
        'gpu = [("a", {"backend": "ollama", "gpus": []})]\n'
        'spare = [("b", {"backend": "ollama", "gpus": []})]\nrouter = ["r"]\n',
        # a router before any backend host
        'router = ["r"]\n',
    ],
)
def test_router_yaml_of_a_fleet_with_empty_parts_loads(
    write_inventory, tmp_path: Path, inventory: str
) -> None:
    catalog = (
        'model_catalog = {"m": {"ollama": "m:1b", "size_mb": 100, "kv_mb_per_1k_ctx": 1, '
        '"groups": ["gpu"]}}'
    )
    fleet = load_fleet(
        write_inventory(
            inventory.replace('"gpus": []', '"gpus": [], "ram_mb": 8192'), {"all": catalog}
        )
    )
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    path = tmp_path / "router.yaml"
    path.write_text(router_yaml(plan, "modelfleet-router"))
    config = load_config(path)
    assert [(b.name, [m.name for m in b.models]) for b in config.backends] == [
        (i.name, [m.name for m in i.models]) for i in plan.instances
    ]


def test_renders_are_deterministic() -> None:
    assert rendered_tree(example_plan()) == rendered_tree(example_plan())


def test_a_change_touches_only_the_files_that_depend_on_it() -> None:
    before = rendered_tree(example_plan())
    after = rendered_tree(example_plan({"llama3.3-70b": {"ctx": 16384}}))
    changed = {path for path in before if before[path] != after[path]}
    assert changed == {
        "gpu-amd-01/etc/llama-swap/gpu-amd-01-mi300x.yaml",
        "router-01/etc/modelfleet/router.yaml",
    }


@pytest.mark.parametrize("bad", ["30x", ""])
def test_bad_keep_alive_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match="keep_alive: cannot read duration"):
        _llama_swap_ttl(bad)


@pytest.mark.parametrize(
    ("keep_alive", "ttl"),
    [
        ("30m", 1800),
        ("1.5h", 5400),
        ("90s", 90),
        ("600", 600),
        ("-1", 0),  # never, in both
        ("-5m", 0),
        # Ollama's 0 unloads at once; llama-swap's ttl 0 never unloads: the shortest it has
        ("0", 1),
        ("0s", 1),
        ("0.4s", 1),
        ("0.4", 1),
    ],
)
def test_keep_alive_as_llama_swap_ttl(keep_alive: str, ttl: int) -> None:
    assert _llama_swap_ttl(keep_alive) == ttl
