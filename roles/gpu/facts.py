"""GPU and host-hardware facts. Each runs one tool; ``deploy/hardware/parsers.py`` parses what it
prints.

- ``NvidiaSmiGpus``, ``NvidiaMigDevices``, ``NvmlGpus``: NVIDIA GPUs (CSV, ``-L``, NVML);
- ``AmdSmiGpus``, ``RocmSmiGpus``: AMD GPUs (JSON);
- ``PciGpus``: GPU-class PCI devices, seen before any driver is installed;
- ``GpuDeviceNodes``: ``/dev/kfd`` and ``/dev/dri/renderD*``;
- ``CpuRam``: CPU cores and RAM;
- ``HostHardwareFact``: all of them in one round trip, combined
  (``deploy.hardware.parsers.hardware_from_sections``);
- ``HostGpus``: the same, but the host-data ``gpus:`` (and ``ram_mb:``/``cpu_cores:``)
  override wins; this is what the planner should get for a host.

Malformed output raises ``deploy.hardware.parsers.ParseError`` naming the tool and line: the
deploy stops before planning with a wrong picture of the hardware.

Example::

    from modelfleet.roles.gpu.facts import HostGpus
    hardware = host.get_fact(HostGpus)      # deploy.hardware.parsers.HostHardware
    [gpu.name for gpu in hardware.gpus]
"""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

from pyinfra.api import FactBase
from typing_extensions import override

from modelfleet.deploy.hardware.parsers import (
    MISSING,
    NVIDIA_SMI_FIELDS,
    NVML_SNIPPET,
    DeviceNodes,
    Gpu,
    HostHardware,
    MigDevice,
    expand_gpu_overrides,
    hardware_from_sections,
    parse_amd_smi_static,
    parse_cpu_ram,
    parse_device_nodes,
    parse_lspci,
    parse_nvidia_smi_csv,
    parse_nvidia_smi_list,
    parse_nvml_json,
    parse_rocm_smi_json,
    split_sections,
)

NVIDIA_SMI_QUERY = (
    f"nvidia-smi --query-gpu={','.join(NVIDIA_SMI_FIELDS)} --format=csv,noheader,nounits"
)
NVIDIA_SMI_LIST = "nvidia-smi -L"
NVML_COMMAND = f"python3 -c {shlex.quote(NVML_SNIPPET)}"
AMD_SMI_COMMAND = "amd-smi static --json"
ROCM_SMI_COMMAND = "rocm-smi --showproductname --showmeminfo vram --json"
LSPCI_COMMAND = "lspci -nn"
DEVICE_NODES_COMMAND = (
    'for f in /dev/kfd /dev/dri/renderD*; do [ -e "$f" ] && echo "$f"; done; true'
)
CPU_RAM_COMMAND = "nproc; grep MemTotal /proc/meminfo"


def _lines(output: list[str]) -> str:
    return "\n".join(output)


class _ToolGpus(FactBase[list[Gpu]]):
    """One tool, one parser from ``deploy/hardware/parsers.py``: the shape every GPU fact shares.

    A subclass names the tool, its command and its parser; a host without the tool gives
    ``[]`` (pyinfra's ``requires_command``).
    """

    tool: ClassVar[str]
    shell: ClassVar[str]

    @staticmethod
    def parse(text: str) -> Any:
        raise NotImplementedError

    @override
    def requires_command(self) -> str:
        return self.tool

    @override
    def command(self) -> str:
        return self.shell

    @override
    @staticmethod
    def default() -> list[Gpu]:
        return []

    @override
    def process(self, output: list[str]) -> Any:
        return type(self).parse(_lines(output))


class NvidiaSmiGpus(_ToolGpus):
    """NVIDIA GPUs from ``nvidia-smi --query-gpu=...`` (index, name, uuid, memory, driver,
    compute capability, MIG mode)::

        [Gpu(vendor="nvidia", index=0, name="NVIDIA GeForce RTX 4090", vram_mb=24564, ...)]
    """

    tool, shell, parse = "nvidia-smi", NVIDIA_SMI_QUERY, staticmethod(parse_nvidia_smi_csv)


class NvidiaMigDevices(_ToolGpus):
    """MIG slices per GPU index, from ``nvidia-smi -L``::

    {0: (), 1: (MigDevice(index=0, profile="3g.40gb", uuid="MIG-...", vram_mb=40960), ...)}
    """

    tool, shell, parse = "nvidia-smi", NVIDIA_SMI_LIST, staticmethod(parse_nvidia_smi_list)

    @override
    @staticmethod
    def default() -> dict[int, tuple[MigDevice, ...]]:  # type: ignore[override]
        return {}


class NvmlGpus(_ToolGpus):
    """NVIDIA GPUs through NVML (``pynvml``), for hosts with python3 + pynvml but no nvidia-smi.

    Runs ``deploy.hardware.parsers.nvml_probe`` on the host with ``python3 -c``; empty when
    python3, pynvml or the NVML library is missing.
    """

    tool, shell = "python3", f"{NVML_COMMAND} 2>/dev/null || true"
    parse = staticmethod(parse_nvml_json)


class AmdSmiGpus(_ToolGpus):
    """AMD GPUs from ``amd-smi static --json`` (market name, VRAM, gfx target, driver)."""

    tool, shell, parse = "amd-smi", AMD_SMI_COMMAND, staticmethod(parse_amd_smi_static)


class RocmSmiGpus(_ToolGpus):
    """AMD GPUs from ``rocm-smi --showproductname --showmeminfo vram --json`` (older ROCm)."""

    tool, shell, parse = "rocm-smi", ROCM_SMI_COMMAND, staticmethod(parse_rocm_smi_json)


class PciGpus(_ToolGpus):
    """NVIDIA/AMD devices of GPU classes (0300, 0302, 0380, 1200) from ``lspci -nn``."""

    tool, shell, parse = "lspci", LSPCI_COMMAND, staticmethod(parse_lspci)


class GpuDeviceNodes(FactBase[DeviceNodes]):
    """``/dev/kfd`` and ``/dev/dri/renderD*`` (what a ROCm container needs)::

    DeviceNodes(kfd=True, render_nodes=("/dev/dri/renderD128",))
    """

    @override
    def command(self) -> str:
        return DEVICE_NODES_COMMAND

    @override
    @staticmethod
    def default() -> DeviceNodes:
        return DeviceNodes()

    @override
    def process(self, output: list[str]) -> DeviceNodes:
        return parse_device_nodes(_lines(output))


class CpuRam(FactBase[tuple[int, int]]):
    """CPU cores and RAM in MiB: ``(32, 128774)``."""

    @override
    def command(self) -> str:
        return CPU_RAM_COMMAND

    @override
    def process(self, output: list[str]) -> tuple[int, int]:
        return parse_cpu_ram(_lines(output))


def _probe(name: str, binary: str, command: str) -> str:
    """One section of the detection script: its output, its exit status, or ``@@missing``."""
    return (
        f"echo @@{name}; if command -v {binary} >/dev/null 2>&1; then {command} 2>/dev/null; "
        f"echo \"@@exit $?\"; else echo '{MISSING}'; fi"
    )


# Everything in one round trip; nvml only runs where nvidia-smi is absent.
DETECT_SCRIPT = "; ".join(
    [
        _probe("nvidia-smi", "nvidia-smi", NVIDIA_SMI_QUERY),
        _probe("nvidia-smi-L", "nvidia-smi", NVIDIA_SMI_LIST),
        "echo @@nvml; if command -v nvidia-smi >/dev/null 2>&1; then echo '@@missing'; "
        f"elif command -v python3 >/dev/null 2>&1 && {NVML_COMMAND} 2>/dev/null; then true; "
        f"else echo '{MISSING}'; fi",
        _probe("amd-smi", "amd-smi", AMD_SMI_COMMAND),
        _probe("rocm-smi", "rocm-smi", ROCM_SMI_COMMAND),
        _probe("lspci", "lspci", LSPCI_COMMAND),
        f"echo @@dev; {DEVICE_NODES_COMMAND}",
        f"echo @@cpu; {CPU_RAM_COMMAND}",
        "true",
    ]
)


class HostHardwareFact(FactBase[HostHardware]):
    """Everything detected on the host in one round trip, combined (no override)::

    HostHardware(gpus=(Gpu(...), ...), cpu_cores=32, ram_mb=128774, source="nvidia-smi", ...)
    """

    @override
    def command(self) -> str:
        return DETECT_SCRIPT

    @override
    def process(self, output: list[str]) -> HostHardware:
        return hardware_from_sections(split_sections(output))


class HostGpus(FactBase[HostHardware]):
    """The host's hardware as the planner should see it: the ``gpus:`` override wins.

    With ``gpus:`` set, only CPU/RAM are asked of the host (and not even that when ``ram_mb``
    and ``cpu_cores`` are set too); otherwise this is ``HostHardwareFact``.
    """

    _override: tuple[Gpu, ...] | None = None
    _ram_mb: int | None = None
    _cpu_cores: int | None = None

    @override
    def check_preconditions(self, state: Any, host: Any) -> str | None:
        # pyinfra makes one fact object per call, so the host's data can ride along here.
        gpus = host.data.get("gpus")
        self._override = None if gpus is None else expand_gpu_overrides(gpus)
        self._ram_mb = host.data.get("ram_mb")
        self._cpu_cores = host.data.get("cpu_cores")
        return None

    @override
    def command(self) -> str:
        if self._override is None:
            return DETECT_SCRIPT
        if self._ram_mb and self._cpu_cores:
            return "echo override"
        return f"echo @@cpu; {CPU_RAM_COMMAND}"

    @override
    def process(self, output: list[str]) -> HostHardware:
        if self._override is None:
            return hardware_from_sections(split_sections(output))
        cores, ram = self._cpu_cores, self._ram_mb
        if not (cores and ram):
            detected_cores, detected_ram = parse_cpu_ram(_lines(output[1:]))
            cores, ram = cores or detected_cores, ram or detected_ram
        return HostHardware(gpus=self._override, cpu_cores=cores, ram_mb=ram, source="override")
