"""GPU parsers against recorded tool output: one fixture file per case (tests as data).

Each ``fixtures/gpu/<parser>/<case>.yaml`` holds the tool's ``output`` and either ``expect``
(the fields that must match; unlisted fields are not compared) or ``error`` (a piece of the
ParseError message).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from modelfleet.deploy.hardware import parsers as gpu
from modelfleet.deploy.hardware.parsers import ParseError

FIXTURES = Path(__file__).parent / "fixtures" / "gpu"

PARSERS: dict[str, Callable[[str], Any]] = {
    "nvidia_smi_csv": gpu.parse_nvidia_smi_csv,
    "nvidia_smi_list": gpu.parse_nvidia_smi_list,
    "nvml_json": gpu.parse_nvml_json,
    "amd_smi_static": gpu.parse_amd_smi_static,
    "rocm_smi_json": gpu.parse_rocm_smi_json,
    "lspci": gpu.parse_lspci,
    "device_nodes": gpu.parse_device_nodes,
    "cpu_ram": gpu.parse_cpu_ram,
    "host": lambda text: gpu.hardware_from_sections(gpu.split_sections(text.splitlines())),
}

CASES = sorted(FIXTURES.glob("*/*.yaml"))


def plain(value: Any) -> Any:
    """Pydantic models, tuples and int keys -> JSON-like data, as the fixtures spell it."""
    if isinstance(value, BaseModel):
        return plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def assert_matches(actual: Any, expected: Any, where: str = "") -> None:
    """Every field the fixture lists must match; lists must have the same length."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a mapping, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key}: missing in {sorted(actual)}"
            assert_matches(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{where}: {len(actual)} items, want {len(expected)}"
        for n, (have, want) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(have, want, f"{where}[{n}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def test_every_parser_has_fixtures() -> None:
    assert {case.parent.name for case in CASES} == set(PARSERS)


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture(case: Path) -> None:
    data = yaml.safe_load(case.read_text())
    parse = PARSERS[case.parent.name]
    assert ("expect" in data) != ("error" in data), "a case has exactly one of expect/error"
    if "error" in data:
        with pytest.raises(ParseError) as err:
            parse(data["output"])
        assert data["error"] in str(err.value)
    else:
        assert_matches(plain(parse(data["output"])), data["expect"], case.stem)


def test_nvml_probe_output_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The snippet that runs on the host, against a fake pynvml with two GPUs."""
    fake = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    devices = [
        ("NVIDIA GeForce RTX 4090", 25757220864, (8, 9), None),
        (b"NVIDIA A100-SXM4-80GB", 85899345920, (8, 0), 1),
    ]
    calls: list[str] = []

    def mig_mode(handle: int) -> tuple[int, int]:
        mode = devices[handle][3]
        if mode is None:
            raise NVMLError("not supported")
        return (mode, mode)

    fake.NVMLError = NVMLError  # type: ignore[attr-defined]
    fake.nvmlInit = lambda: calls.append("init")  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda index: index  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: devices[h][0]  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUUID = lambda h: f"GPU-{h}"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=devices[h][1])  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCudaComputeCapability = lambda h: devices[h][2]  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMigMode = mig_mode  # type: ignore[attr-defined]
    fake.nvmlSystemGetDriverVersion = lambda: b"550.54.15"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)

    namespace: dict[str, Any] = {}
    exec(gpu.NVML_SNIPPET.replace("print(nvml_probe())", "OUT = nvml_probe()"), namespace)
    gpus = gpu.parse_nvml_json(namespace["OUT"])

    assert calls == ["init", "shutdown"]
    assert [(g.name, g.vram_mb, g.compute_cap, g.mig_enabled) for g in gpus] == [
        ("NVIDIA GeForce RTX 4090", 24564, "8.9", False),
        ("NVIDIA A100-SXM4-80GB", 81920, "8.0", True),
    ]
    assert {g.driver for g in gpus} == {"550.54.15"}


def test_gpu_override_entries() -> None:
    gpus = gpu.expand_gpu_overrides(
        [
            {"name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564, "count": 2},
            {"name": "AMD Instinct MI300X", "vram_mb": 196592},
        ]
    )
    # each vendor counts from 0, as CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES and detection do
    assert [(g.vendor, g.index) for g in gpus] == [("nvidia", 0), ("nvidia", 1), ("amd", 0)]
    with pytest.raises(ValueError, match=r"gpus\[0\]\.vendor: cannot tell the vendor"):
        gpu.expand_gpu_overrides([{"name": "Mystery Accelerator", "vram_mb": 1}])
    with pytest.raises(ValueError, match=r"gpus\[0\]: vram_mb: Input should be greater than 0"):
        gpu.expand_gpu_overrides([{"name": "NVIDIA L4", "vram_mb": 0}])
    # a name alone, as people write it: the answer shows the shape wanted
    with pytest.raises(ValueError) as err:
        gpu.expand_gpu_overrides(["RTX 4090"])  # type: ignore[list-item]
    assert str(err.value) == (
        "gpus[0]: expected a mapping, got str ('RTX 4090'); e.g. {'name': 'NVIDIA GeForce RTX "
        "4090', 'vram_mb': 24564, 'count': 2}, or leave gpus out and let the deploy detect them"
    )
