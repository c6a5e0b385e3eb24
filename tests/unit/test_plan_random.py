"""The planner and the renderer on random fleets: a plan either fails with the planner's own
error, or every file it renders parses back the way its consumer reads it, and its resident-
model caps are ones each backend can hold.

The fleets mix every backend kind, GPU vendors and sizes, CPU-only hosts, ``instance_per_gpu``,
the parallelism and residency knobs, router hosts with and without backends, catalog entries
in no group, aliases and ``placement_strict``. This found a router.yaml that did not load (a
backend host with no model) and a llama-swap config that does not start (no model).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from modelfleet.deploy.cli import main as cli
from modelfleet.deploy.inventory import FleetError, load_fleet
from modelfleet.deploy.plan import FleetPlan, PlanError, hardware_from_overrides, plan_fleet

FLEETS = 300
GPUS = [
    ("NVIDIA L4", 23034),
    ("NVIDIA GeForce RTX 4090", 24564),
    ("NVIDIA H100 80GB HBM3", 81559),
    ("AMD Instinct MI300X", 196592),
    ("AMD Radeon RX 7900 XTX", 24560),
]
HOST_KNOBS: dict[str, list[Any]] = {
    "instance_per_gpu": [True, False],
    "num_parallel": [1, 2, 4],
    "max_loaded_models": [0, 1, 2, 3],
    "keep_alive": ["30m", "-1", "0", "90s"],
    "backend_port": [11434, 8080, 8081, 9000],
}


def random_inventory(rng: random.Random) -> tuple[str, str]:
    """(inventory source, group_data/all.py source)."""
    hosts = []
    for n in range(rng.randint(1, 4)):
        data: dict[str, Any] = {
            "node_name": f"h{n}",
            "backend": rng.choice(["ollama", "llama-swap", "llama-server"]),
            "ram_mb": rng.choice([16384, 65536]),
            "gpus": [
                {"name": name, "vram_mb": vram, "count": rng.randint(1, 2)}
                for name, vram in rng.sample(GPUS, rng.randint(0, 2))
            ],
        }
        if data["backend"] == "ollama" and rng.random() < 0.3:
            data["backend_install"] = "container"
        data |= {k: rng.choice(v) for k, v in HOST_KNOBS.items() if rng.random() < 0.4}
        hosts.append((rng.choice(["g1", "g2"]), f"h{n}.lan", data))
    lines = [
        f"{g} = {[(name, d) for group, name, d in hosts if group == g]!r}" for g in ("g1", "g2")
    ]
    lines.append(f"router = [{rng.choice(['r.lan', *(name for _, name, _ in hosts)])!r}]")
    catalog = {}
    for n in range(rng.randint(1, 6)):
        name = f"m{n}"
        catalog[name] = {
            "ollama": f"{name}:1b",
            "gguf": {
                "url": f"http://files/{name}.gguf",
                "sha256": "0" * 64,
                "file": f"{name}.gguf",
            },
            "size_mb": rng.choice([100, 500, 4000, 15000, 40000, 120000]),
            "kv_mb_per_1k_ctx": rng.choice([1, 18, 128, 496]),
            "ctx": rng.choice([512, 2048, 8192, 32768]),
            "slots": rng.randint(1, 4),
            "groups": rng.sample(["g1", "g2"], rng.randint(0, 2)),
            **({"aliases": [f"alias{n}"]} if rng.random() < 0.3 else {}),
        }
    all_data = f"model_catalog = {catalog!r}\nplacement_strict = {rng.random() < 0.5}\n"
    if rng.random() < 0.3:
        all_data += f"router = {{'port': {rng.choice([11434, 8080, 8081])}}}\n"
    return "\n".join(lines) + "\n", all_data


def broken_invariants(plan: FleetPlan, router_port: int) -> list[str]:
    broken = []
    for host in plan.hosts:
        ports = [inst.port for inst in host.instances]
        if len(set(ports)) != len(ports) or (host.router and router_port in ports):
            broken.append(f"{host.name}: ports {ports}, router {host.router} on {router_port}")
        for inst in host.instances:
            needs = sorted((m.need_mb for m in inst.models), reverse=True)
            if any(need > inst.capacity_mb for need in needs):
                broken.append(f"{inst.name}: a model needs more than {inst.capacity_mb} MB")
            held = needs[: inst.max_loaded]
            if inst.kind != "ollama" and sum(held) > inst.capacity_mb:
                broken.append(f"{inst.name}: {inst.max_loaded} resident need {sum(held)} MB")
            if inst.kind == "llama-swap" and 1 < inst.max_loaded < len(needs):
                broken.append(f"{inst.name}: llama-swap cap {inst.max_loaded} of {len(needs)}")
    names = [inst.name for inst in plan.instances]
    if len(set(names)) != len(names):
        broken.append(f"instance names repeat: {names}")
    return broken


def test_plans_of_random_fleets_render_and_hold(tmp_path: Path) -> None:
    rng = random.Random(1)
    runner = CliRunner()
    outcomes = {"rendered": 0, "refused": 0}
    for n in range(FLEETS):
        inventory, all_data = random_inventory(rng)
        folder = tmp_path / f"fleet{n}"
        (folder / "group_data").mkdir(parents=True)
        (folder / "group_data" / "all.py").write_text(all_data)
        path = folder / "fleet.py"
        path.write_text(inventory)
        try:
            fleet = load_fleet(str(path))
            plan = plan_fleet(fleet, hardware_from_overrides(fleet))
        except (FleetError, PlanError):
            outcomes["refused"] += 1
            continue
        assert broken_invariants(plan, fleet.router.port) == [], inventory + all_data
        # the CLI renders every file of every host and parses each back
        result = runner.invoke(cli, ["render", str(path), "--out", str(folder / "out")])
        assert result.exit_code == 0, f"{inventory}{all_data}\n{result.output}"
        outcomes["rendered"] += 1
    # both kinds of outcome occur often enough for the property to mean something
    assert outcomes["rendered"] >= FLEETS // 5 and outcomes["refused"] >= FLEETS // 5, outcomes
