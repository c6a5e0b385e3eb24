"""Controller-side regressions found in an audit: an inventory in, the plan's and the rendered
files' values out (tests as data)."""

from __future__ import annotations

import pytest

from modelfleet.deploy.inventory import load_fleet
from modelfleet.deploy.plan import hardware_from_overrides, plan_fleet

L4 = '{"name": "NVIDIA L4", "vram_mb": 23034}'
MI210 = '{"name": "AMD Instinct MI210", "vram_mb": 65520}'
SMALL = """
model_catalog = {
    "small": {"ollama": "small:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 100, "groups": ["gpu"]},
}
"""


def plan_of(path: str):
    fleet = load_fleet(path)
    return plan_fleet(fleet, hardware_from_overrides(fleet))


@pytest.mark.parametrize(
    ("gpus", "visible"),
    [
        # one GPU of each vendor, whichever comes first in the override: each is device 0 of
        # its vendor (ROCR_VISIBLE_DEVICES=1 would hide the only AMD GPU from ROCm)
        (
            [L4, MI210],
            {"h-l4": {"CUDA_VISIBLE_DEVICES": "0"}, "h-mi210": {"ROCR_VISIBLE_DEVICES": "0"}},
        ),
        (
            [MI210, L4],
            {"h-mi210": {"ROCR_VISIBLE_DEVICES": "0"}, "h-l4": {"CUDA_VISIBLE_DEVICES": "0"}},
        ),
        (
            [L4, MI210, L4],
            {"h-l4": {"CUDA_VISIBLE_DEVICES": "0,1"}, "h-mi210": {"ROCR_VISIBLE_DEVICES": "0"}},
        ),
    ],
    ids=["nvidia-first", "amd-first", "amd-between"],
)
def test_mixed_vendor_override_numbers_devices_per_vendor(
    write_inventory, gpus: list[str], visible: dict[str, dict[str, str]]
) -> None:
    path = write_inventory(
        f'gpu = [("h", {{"gpus": [{", ".join(gpus)}]}})]\nrouter = ["r"]\n',
        {"all": SMALL, "gpu": 'backend = "ollama"'},
    )
    instances = {inst.name: inst for inst in plan_of(path).instances}
    assert set(instances) == set(visible)
    for name, env in visible.items():
        assert {key: instances[name].env[key] for key in env} == env, name


def _catalog(entries: dict[str, tuple[int, int, int]]) -> str:
    """name -> (size_mb, kv_mb_per_1k_ctx, ctx), every one an Ollama model of group gpu."""
    rows = [
        f'"{name}": {{"ollama": "{name}:1b", "size_mb": {size}, "kv_mb_per_1k_ctx": {kv}, '
        f'"ctx": {ctx}, "groups": ["gpu"]}}'
        for name, (size, kv, ctx) in entries.items()
    ]
    return "model_catalog = {" + ", ".join(rows) + "}\n"


@pytest.mark.parametrize(
    ("catalog", "context_length", "need_mb"),
    [
        # one model: its own ctx, pinned so Ollama does not pick its default (4096, or 32k/256k
        # by VRAM in later releases)
        ({"a": (1000, 100, 8192)}, "8192", {"a": 1000 + 800}),
        # several: Ollama runs every model with the one OLLAMA_CONTEXT_LENGTH, the largest
        # ctx, and each is planned with it
        (
            {"a": (1000, 100, 2048), "b": (2000, 50, 16384)},
            "16384",
            {"a": 1000 + 1600, "b": 2000 + 800},
        ),
    ],
    ids=["one-model", "largest-ctx-wins"],
)
def test_ollama_runs_with_the_context_length_it_was_planned_for(
    write_inventory, catalog: dict[str, tuple[int, int, int]], context_length: str, need_mb: dict
) -> None:
    from modelfleet.deploy.inventory import load_inventory
    from modelfleet.deploy.render import parse_back, render_host

    path = write_inventory(
        f'gpu = [("h", {{"gpus": [{L4}]}})]\nrouter = ["r"]\n',
        {"all": _catalog(catalog), "gpu": 'backend = "ollama"\nollama_release_sha256 = "0" * 64'},
    )
    plan = plan_of(path)
    (inst,) = plan.instances
    assert inst.env["OLLAMA_CONTEXT_LENGTH"] == context_length
    assert {m.name: m.need_mb for m in inst.models} == need_mb
    assert {m.ctx for m in inst.models} == {int(context_length)}
    # what the router is told is what Ollama runs
    (backend,) = plan.router_config().backends
    assert {m.ctx for m in backend.models} == {int(context_length)}
    data = load_inventory(path).get_host("h").data.dict()
    env_files = [f for f in render_host(plan, plan.host("h"), data) if f.path.endswith(".env")]
    assert [parse_back(f)["OLLAMA_CONTEXT_LENGTH"] for f in env_files] == [context_length]


def test_ollama_model_that_fits_only_at_its_own_ctx_is_an_error(write_inventory) -> None:
    """Planned at its own 2048 it would fit the L4's 22010 MB; Ollama runs it at 32768."""
    from modelfleet.deploy.plan import PlanError

    path = write_inventory(
        f'gpu = [("h", {{"gpus": [{L4}]}})]\nrouter = ["r"]\n',
        {
            "all": _catalog({"big": (20000, 100, 2048), "long": (500, 10, 32768)}),
            "gpu": 'backend = "ollama"',
        },
    )
    with pytest.raises(PlanError) as err:
        plan_of(path)
    assert str(err.value).startswith(
        "model big fits on none of its hosts: on host h it needs 23200 MB (weights 20000 MB + "
        "KV cache 3200 MB for ctx 32768 x 1 slot), more than the 22010 MB"
    )
