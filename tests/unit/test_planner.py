"""Planner: grouping by GPU type, ports, device visibility, VRAM fit, the too-big error."""

from __future__ import annotations

import pytest

from modelfleet.deploy.inventory import load_fleet
from modelfleet.deploy.plan import PlanError, gpu_slug, hardware_from_overrides, plan_fleet

EXAMPLE = "inventory/example.py"

CATALOG = """
model_catalog = {
    "small": {"ollama": "small:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 100, "ctx": 4096,
              "groups": ["gpu"]},
    "huge": {"ollama": "huge:405b", "size_mb": 230000, "kv_mb_per_1k_ctx": 500, "ctx": 8192,
             "groups": ["gpu"]},
}
"""
SMALL_ONLY = """
model_catalog = {
    "small": {"ollama": "small:1b", "size_mb": 1000, "kv_mb_per_1k_ctx": 100, "groups": ["gpu"]},
}
"""
TWO_HOSTS = """
gpu = [
    ("big", {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "vram_mb": 81559, "count": 2}]}),
    ("small", {"gpus": [{"name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564}]}),
]
"""


def plan_of(path: str):
    fleet = load_fleet(path)
    return plan_fleet(fleet, hardware_from_overrides(fleet))


def test_example_groups_identical_gpus_into_instances() -> None:
    plan = plan_of(EXAMPLE)
    nv = plan.host("gpu-nv-01")
    assert [i.name for i in nv.instances] == ["gpu-nv-01-rtx-4090", "gpu-nv-01-rtx-a4000"]
    big, small = nv.instances
    assert (big.port, small.port) == (11434, 11435)
    assert big.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert small.env["CUDA_VISIBLE_DEVICES"] == "2"
    assert big.env["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert big.vram_mb == 2 * 24564 and big.capacity_mb == 2 * 24564 - 2 * 1024
    # gemma3-27b needs more than the A4000 offers, so it only lands on the 4090 pair.
    assert "gemma3-27b" in [m.name for m in big.models]
    assert "gemma3-27b" not in [m.name for m in small.models]
    for inst in plan.instances:
        assert all(m.need_mb <= inst.capacity_mb for m in inst.models)


def test_example_amd_visibility_and_cpu_host_plans_against_ram() -> None:
    plan = plan_of(EXAMPLE)
    (xtx,) = plan.host("gpu-amd-02").instances
    assert xtx.accelerator == "rocm" and xtx.install == "container"
    assert xtx.env["ROCR_VISIBLE_DEVICES"] == "0,1"
    assert xtx.env["HIP_VISIBLE_DEVICES"] == "0,1"
    (cpu,) = plan.host("cpu-01").instances
    assert cpu.accelerator == "cpu" and cpu.kind == "llama-server"
    assert cpu.capacity_mb == 65536 - 8192
    assert not plan.host("router-01").instances and plan.host("router-01").router


def test_router_config_carries_every_instance() -> None:
    plan = plan_of(EXAMPLE)
    config = plan.router_config()
    assert [b.name for b in config.backends] == [i.name for i in plan.instances]
    by_name = {b.name: b for b in config.backends}
    ollama = by_name["gpu-nv-01-rtx-4090"]
    assert ollama.kind == "ollama" and ollama.url == "http://gpu-nv-01.lan:11434"
    tags = {m.name: m.upstream_name for m in ollama.models}
    assert tags["llama3.1-8b"] == "llama3.1:8b"


def test_too_big_model_names_model_need_and_largest_host(write_inventory) -> None:
    path = write_inventory(TWO_HOSTS, {"all": CATALOG, "gpu": 'backend = "ollama"'})
    with pytest.raises(PlanError) as err:
        plan_of(path)
    message = str(err.value)
    assert "model huge fits on none of its hosts" in message
    # The figure compared, with what was subtracted from the host's memory.
    assert "on host big it needs 234000 MB" in message
    assert "161070 MB (163118 MB VRAM of 2x NVIDIA H100 80GB HBM3 minus 2048 MB headroom)" in (
        message
    )


def test_a_host_without_a_memory_size_is_one_problem(write_inventory) -> None:
    """Not also "small fits on none of its hosts ... more than the -4096 MB (0 MB RAM minus
    4096 MB headroom)": its models were compared with a size nobody gave."""
    path = write_inventory(
        'gpu = [("c1", {"gpus": []})]\n', {"all": SMALL_ONLY, "gpu": 'backend = "ollama"'}
    )
    with pytest.raises(PlanError) as err:
        plan_of(path)
    assert err.value.problems == ["host c1: no GPUs and no RAM size; set ram_mb in its host data"]


def test_too_big_model_message_compares_with_its_own_hosts(write_inventory) -> None:
    """A bigger host that does not carry the model is not what the need was compared with."""
    path = write_inventory(
        """
        gpu = [("box2", {"gpus": [{"name": "NVIDIA GeForce RTX 3090", "vram_mb": 24576}]})]
        cpu = [("cpu1", {"gpus": [], "ram_mb": 16384, "cpu_cores": 8})]
        """,
        {
            "all": """
                model_catalog = {"gemma3-27b": {"ollama": "gemma3:27b", "size_mb": 15936,
                    "kv_mb_per_1k_ctx": 496, "ctx": 4096, "groups": ["cpu"]}}
            """,
            "gpu": 'backend = "ollama"',
            "cpu": 'backend = "ollama"',
        },
    )
    with pytest.raises(PlanError) as err:
        plan_of(path)
    message = str(err.value)
    need = message.split("on host cpu1 it needs ")[1].split(" MB")[0]
    offered = message.split("more than the ")[1].split(" MB")[0]
    assert int(need) > int(offered), message
    assert "16384 MB RAM minus" in message
    assert "instance in the fleet, box2-rtx-3090 on host box2" in message
    assert "does not carry gemma3-27b" in message


def test_mig_slices_are_instances_of_their_own(write_inventory) -> None:
    path = write_inventory(
        """
        gpu = [("mig-host", {
            "backend": "ollama",
            "gpus": [
                {"name": "NVIDIA A100-SXM4-80GB", "vram_mb": 81920, "uuid": "GPU-aaa"},
                {"name": "NVIDIA A100-SXM4-80GB", "vram_mb": 81920, "uuid": "GPU-bbb",
                 "mig_enabled": True,
                 "mig_devices": [
                     {"index": 0, "profile": "3g.40gb", "uuid": "MIG-1", "vram_mb": 40192},
                     {"index": 1, "profile": "3g.40gb", "uuid": "MIG-2", "vram_mb": 40192},
                 ]},
            ],
        })]
        """,
        {"all": CATALOG},
    )
    fleet = load_fleet(path)
    fleet = fleet.model_copy(update={"catalog": {"small": fleet.catalog["small"]}})
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    names = [i.name for i in plan.instances]
    assert names == [
        "mig-host-a100-sxm4-80gb",
        "mig-host-a100-sxm4-80gb-mig-3g-40gb",
        "mig-host-a100-sxm4-80gb-mig-3g-40gb-2",
    ]
    assert [i.env["CUDA_VISIBLE_DEVICES"] for i in plan.instances] == ["GPU-aaa", "MIG-1", "MIG-2"]
    assert [i.port for i in plan.instances] == [11434, 11435, 11436]


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA RTX A4000", "rtx-a4000"),
        ("AMD Instinct MI300X", "mi300x"),
        ("AMD Radeon RX 7900 XTX", "rx-7900-xtx"),
    ],
)
def test_gpu_slug(name: str, slug: str) -> None:
    assert gpu_slug(name) == slug


def test_router_and_backend_on_one_port_is_an_error(write_inventory) -> None:
    path = write_inventory(
        """
        gpu = [("box", {"gpus": [{"name": "NVIDIA L4", "vram_mb": 23034}]})]
        router = ["box"]
        """,
        {"all": SMALL_ONLY, "gpu": 'backend = "ollama"'},
    )
    fleet = load_fleet(path)
    with pytest.raises(PlanError, match=r"host box: the router \(key router.port\) and instance"):
        plan_fleet(fleet, hardware_from_overrides(fleet))


def test_instance_per_gpu(write_inventory) -> None:
    path = write_inventory(
        """
        gpu = [("box", {"instance_per_gpu": True,
                        "gpus": [{"name": "NVIDIA L4", "vram_mb": 23034, "count": 2}]})]
        """,
        {"all": SMALL_ONLY, "gpu": 'backend = "ollama"'},
    )
    plan = plan_of(path)
    assert [(i.name, i.port, i.env["CUDA_VISIBLE_DEVICES"]) for i in plan.instances] == [
        ("box-l4", 11434, "0"),
        ("box-l4-2", 11435, "1"),
    ]
    assert [i.vram_domain for i in plan.instances] == ["box/l4", "box/l4-2"]


MIXED = """
gpu = [
    ("big", {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "vram_mb": 81559}]}),
    ("small", {"gpus": [{"name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564}]}),
]
"""
MID_MODEL = """
model_catalog = {
    "mid": {"ollama": "mid:32b", "size_mb": 30000, "kv_mb_per_1k_ctx": 100, "groups": ["gpu"]},
}
"""


def test_a_model_too_big_for_one_of_its_hosts_is_an_error(write_inventory) -> None:
    path = write_inventory(MIXED, {"all": MID_MODEL, "gpu": 'backend = "ollama"'})
    with pytest.raises(PlanError) as err:
        plan_of(path)
    assert str(err.value) == (
        "model mid needs 30400 MB (weights 30000 MB + KV cache 400 MB for ctx 4096 x 1 slot), "
        "more than host small offers (largest instance small-rtx-4090: 23540 MB (24564 MB VRAM "
        "of 1x NVIDIA GeForce RTX 4090 minus 1024 MB headroom)); it is placed on big. "
        "Take it off this host's groups/models, or set placement_strict = False"
    )


def test_placement_not_strict_skips_and_lists_the_misfit(write_inventory) -> None:
    path = write_inventory(
        MIXED, {"all": MID_MODEL + "placement_strict = False\n", "gpu": 'backend = "ollama"'}
    )
    plan = plan_of(path)
    assert [m.name for m in plan.host("big").instances[0].models] == ["mid"]
    assert plan.host("small").instances[0].models == ()
    (misfit,) = plan.skipped
    assert (misfit.model, misfit.host, misfit.need_mb, misfit.largest_mb) == (
        "mid",
        "small",
        30400,
        23540,
    )


def _three_models(kind: str) -> str:
    """Models needing 20000, 12000 and 7000 MB (weights + 1 MB of KV), for ``kind``."""
    gguf = '"gguf": {"url": "http://files/%s.gguf", "sha256": "%s", "file": "%s.gguf"}, '
    entries = []
    for name, size in [("a", 19999), ("b", 11999), ("c", 6999)]:
        source = f'"ollama": "{name}:1b", ' if kind == "ollama" else gguf % (name, "0" * 64, name)
        entries.append(
            f'"{name}": {{{source}"size_mb": {size}, "kv_mb_per_1k_ctx": 1, "ctx": 1024, '
            '"groups": ["gpu"]}'
        )
    return "model_catalog = {" + ", ".join(entries) + "}\n"


# (backend, max_loaded_models, GPU MiB) -> the instance's cap, or the error. 32000 MB usable
# (33024 minus 1024 headroom) holds a+b (32000) or b+c but not all three (39000); 40000 holds all.
# Ollama checks memory itself; llama-server counts models, so any k of them must fit;
# llama-swap runs its group one at a time or all together.
MAX_LOADED_CASES = [
    ("ollama", 0, 33024, 2),
    ("ollama", 5, 33024, 5),
    ("llama-server", 0, 33024, 2),
    ("llama-server", 2, 33024, 2),
    (
        "llama-server",
        3,
        33024,
        "3 of its models resident at once may need 39000 MB, more than "
        "its 32000 MB (llama-server counts models, not memory); at most 2 always fit",
    ),
    ("llama-swap", 0, 33024, 1),
    ("llama-swap", 0, 41024, 3),
    ("llama-swap", 1, 33024, 1),
    ("llama-swap", 3, 41024, 3),
    (
        "llama-swap",
        2,
        41024,
        "which holds 3 models: llama-swap runs them one at a time or all "
        "together (its group's swap), so set 1 or 3",
    ),
    ("llama-swap", 3, 33024, "so set 1 (all 3 together need 39000 MB, more than its 32000 MB)"),
]


@pytest.mark.parametrize(("kind", "cap", "vram_mb", "expected"), MAX_LOADED_CASES)
def test_resident_model_cap_is_one_the_backend_can_hold(
    write_inventory, kind: str, cap: int, vram_mb: int, expected: int | str
) -> None:
    knob = f', "max_loaded_models": {cap}' if cap else ""
    path = write_inventory(
        f'gpu = [("g", {{"backend": "{kind}"{knob}, '
        f'"gpus": [{{"name": "NVIDIA L40S", "vram_mb": {vram_mb}}}]}})]\n',
        {"all": _three_models(kind)},
    )
    if isinstance(expected, str):
        with pytest.raises(PlanError) as err:
            plan_of(path)
        (problem,) = err.value.problems
        assert problem.startswith(f"host g: key max_loaded_models: {cap} on {kind} instance g-l40s")
        assert expected in problem
        return
    (instance,) = plan_of(path).instances
    assert instance.max_loaded == expected


def test_a_llama_swap_instance_without_models_is_an_error(write_inventory) -> None:
    """llama-swap will not start on a config without models; Ollama and llama-server do."""
    path = write_inventory(
        'gpu = [("g", {"backend": "llama-swap", "gpus": [], "ram_mb": 8192})]\n'
        'spare = [("s", {"backend": "llama-swap", "gpus": [], "ram_mb": 8192}),\n'
        '         ("o", {"backend": "ollama", "gpus": [], "ram_mb": 8192})]\n',
        {
            "all": _three_models("llama-swap")
            .replace("19999", "99")
            .replace("11999", "99")
            .replace("6999", "99")
        },
    )
    with pytest.raises(PlanError) as err:
        plan_of(path)
    assert err.value.problems == [
        "host s: llama-swap instance s-cpu holds no model, and llama-swap does not start "
        "without one: list a model_catalog entry that fits its 4096 MB in the host's models or "
        "give it one of the host's groups (spare)"
    ]
