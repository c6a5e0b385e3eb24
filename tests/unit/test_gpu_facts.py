"""GPU facts: command, requires_command and processing as data (``facts/gpu.<Fact>/<case>.json``,
pyinfra's own fact-fixture shape), and the detection script run for real against the project's
stand-in GPU tools (``tests/fakegpu``).

The fixture harness is a few lines instead of ``pyinfra_testing.facts`` because that imports
``pyinfra_cli``, whose import monkey-patches the whole test process with gevent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from modelfleet.roles.gpu import facts as gpu_facts
from tests.unit.test_gpu_parsers import assert_matches, plain

FACTS = Path(__file__).parent / "facts"
CASES = sorted(FACTS.glob("gpu.*/*.json"))
FAKEGPU = Path(__file__).resolve().parents[2] / "deploy" / "lab" / "fakegpu"


def _fake_host(data: dict[str, Any]) -> Any:
    return types.SimpleNamespace(data=types.SimpleNamespace(get=lambda k, d=None: data.get(k, d)))


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fact_case(case: Path) -> None:
    data = json.loads(case.read_text())
    fact = getattr(gpu_facts, case.parent.name.split(".", 1)[1])()
    assert fact.check_preconditions(None, _fake_host(data.get("host_data", {}))) is None
    if "command" in data:
        assert fact.command() == data["command"]
    else:
        assert fact.command() == gpu_facts.DETECT_SCRIPT
    assert fact.requires_command() == data.get("requires_command")
    assert_matches(plain(fact.process(data["output"])), data["fact"], case.stem)


def _standin_tools(tmp_path: Path, profile: str) -> dict[str, str]:
    """A PATH with the stand-in tools, emulating one profile of deploy/lab/fakegpu/profiles.json."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nvidia-smi", "amd-smi", "rocm-smi", "lspci"):
        wrapper = bin_dir / tool
        wrapper.write_text(
            f'#!/bin/sh\nexec {sys.executable} {FAKEGPU / "fakegpu.py"} {tool} "$@"\n'
        )
        wrapper.chmod(0o755)
    profiles = json.loads((FAKEGPU / "profiles.json").read_text())
    config = tmp_path / "fakegpu.json"
    config.write_text(json.dumps({"profile": profile, **profiles[profile]}))
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKEGPU_CONFIG": str(config),
        "FAKEGPU_STATE": str(tmp_path / "state.json"),
    }


@pytest.mark.skipif(not (FAKEGPU / "fakegpu.py").is_file(), reason="no stand-in GPU tools")
@pytest.mark.parametrize(
    ("profile", "names"),
    [
        ("rtx4090x2", ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"]),
        ("a100x1", ["NVIDIA A100-SXM4-80GB"]),
        ("mi300x", ["AMD Instinct MI300X"]),
        ("cpu", []),
    ],
)
def test_detect_script_against_standin_tools(
    tmp_path: Path, profile: str, names: list[str]
) -> None:
    env = _standin_tools(tmp_path, profile)
    result = subprocess.run(
        ["sh", "-c", gpu_facts.DETECT_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    hardware = gpu_facts.HostHardwareFact().process(result.stdout.splitlines())
    assert [g.name for g in hardware.gpus] == names
    profiles = json.loads((FAKEGPU / "profiles.json").read_text())
    assert [g.vram_mb for g in hardware.gpus] == [g["vram_mb"] for g in profiles[profile]["gpus"]]
    assert hardware.cpu_cores >= 1 and hardware.ram_mb > 0
    if names:
        assert hardware.source in ("nvidia-smi", "amd-smi")
        assert len(hardware.pci_devices) == len(names)
