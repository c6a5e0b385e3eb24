"""GPU and host-hardware detection: typed results and pure parsers.

Every parser takes the raw text a tool printed on a host and returns typed values, or raises
:class:`ParseError` naming the tool, the line and what was wrong. Nothing here runs a command;
the pyinfra facts in ``roles/gpu/facts.py`` run them and hand the output to these functions, so
the same code is tested against fixture files in ``tests/unit/fixtures/gpu/``.

Example::

    line = "0, NVIDIA GeForce RTX 4090, GPU-5a1b..., 24564, 550.54.15, 8.9, [N/A]"
    parse_nvidia_smi_csv(line)[0].vram_mb  # 24564
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Vendor = Literal["nvidia", "amd"]

# PCI vendor ids and display-controller classes (VGA, 3D, "display controller"), plus
# "processing accelerator" (1200): what AMD Instinct cards (MI210, MI300X) report.
PCI_VENDORS: dict[str, Vendor] = {"10de": "nvidia", "1002": "amd"}
PCI_VENDORS_BY_NAME: dict[str, str] = {name: pci for pci, name in PCI_VENDORS.items()}
PCI_GPU_CLASSES = ("0300", "0302", "0380", "1200")

# The query ``roles/gpu/facts.py`` asks nvidia-smi; the parser expects exactly these columns.
NVIDIA_SMI_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "driver_version",
    "compute_cap",
    "mig.mode.current",
)


class ParseError(ValueError):
    """Tool output that cannot be understood; the message names the tool and the line."""


class MigDevice(BaseModel):
    """One MIG slice of an NVIDIA GPU, as ``nvidia-smi -L`` lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    profile: str = Field(description="e.g. 3g.40gb")
    uuid: str
    vram_mb: int = Field(gt=0)


class Gpu(BaseModel):
    """One GPU as the planner sees it.

    This is also the shape of one entry of the host-data ``gpus:`` override, where only
    ``name`` and ``vram_mb`` are required (``vendor`` is guessed from the name, ``index`` from
    the position among the vendor's GPUs, and ``count`` repeats an entry)::

        gpus = [{"name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564, "count": 2}]
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: Vendor
    index: int = Field(ge=0)
    name: str = Field(min_length=1)
    vram_mb: int = Field(gt=0)
    uuid: str | None = None
    driver: str | None = None
    compute_cap: str | None = None
    pci_id: str | None = Field(default=None, description="vendor:device, e.g. 10de:2684")
    mig_enabled: bool = False
    mig_devices: tuple[MigDevice, ...] = ()
    source: str = Field(default="override", description="which tool reported it")


class PciDevice(BaseModel):
    """A GPU-class PCI device from ``lspci -nn`` (seen even before any driver is installed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slot: str
    class_code: str
    vendor: Vendor
    device_id: str
    description: str


class DeviceNodes(BaseModel):
    """The ROCm device nodes: ``/dev/kfd`` and the DRM render nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kfd: bool = False
    render_nodes: tuple[str, ...] = ()


class HostHardware(BaseModel):
    """Everything the planner needs to know about one host's compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: tuple[Gpu, ...] = ()
    cpu_cores: int = Field(default=1, ge=1)
    ram_mb: int = Field(default=0, ge=0)
    source: str = "override"
    pci_devices: tuple[PciDevice, ...] = ()
    device_nodes: DeviceNodes = Field(default_factory=DeviceNodes)
    notes: tuple[str, ...] = Field(default=(), description="what detection fell back on, and why")


# --------------------------------------------------------------------------- helpers


def _vendor_from_name(name: str) -> Vendor | None:
    lowered = name.lower()
    if any(word in lowered for word in ("nvidia", "geforce", "quadro", "tesla", "rtx", "gtx")):
        return "nvidia"
    if any(word in lowered for word in ("amd", "radeon", "instinct", "mi300", "mi250", "mi210")):
        return "amd"
    return None


def _int(value: Any, tool: str, where: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise ParseError(f"{tool}: {where}: expected an integer, got {value!r}") from None


def _mib_from_text(value: Any, tool: str, where: str) -> int:
    """Amounts as tools print them: 25753026560, "24560 MiB", "192 GB", "196592 MB"."""
    if isinstance(value, dict):  # amd-smi: {"value": 196592, "unit": "MB"}
        return _mib_from_text(f"{value.get('value')} {value.get('unit', 'MB')}", tool, where)
    text = str(value).strip()
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?i?B)?", text, flags=re.IGNORECASE)
    if not match:
        raise ParseError(f"{tool}: {where}: expected a memory size, got {value!r}")
    number = float(match.group(1))
    unit = (match.group(2) or "B").upper().replace("I", "")
    scale = {"B": 1 / 2**20, "KB": 1 / 2**10, "MB": 1, "GB": 2**10, "TB": 2**20}[unit]
    return int(number * scale)


def _mig_profile_mb(profile: str) -> int:
    """``3g.40gb`` -> 40960 (MIG profiles name their memory size)."""
    match = re.search(r"\.(\d+)gb", profile)
    return int(match.group(1)) * 1024 if match else 0


GPU_EXAMPLE = "{'name': 'NVIDIA GeForce RTX 4090', 'vram_mb': 24564, 'count': 2}"


def expand_gpu_overrides(entries: Iterable[dict[str, Any]]) -> tuple[Gpu, ...]:
    """Turn host-data ``gpus:`` entries into Gpu objects (``count`` repeats; index by position
    among the entries of the same vendor, the way each vendor's tools number them).

    Raises ValueError (with the entry's position) for a bad entry; ``deploy.inventory`` wraps it
    with the file, host and key.
    """
    gpus: list[Gpu] = []
    for position, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise ValueError(
                f"gpus[{position}]: expected a mapping, got {type(raw).__name__} ({raw!r}); "
                f"e.g. {GPU_EXAMPLE}, or leave gpus out and let the deploy detect them"
            )
        entry = dict(raw)
        count = entry.pop("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"gpus[{position}].count: expected a positive integer, got {count!r}")
        if "vendor" not in entry:
            vendor = _vendor_from_name(str(entry.get("name", "")))
            if vendor is None:
                raise ValueError(
                    f"gpus[{position}].vendor: cannot tell the vendor from name "
                    f"{entry.get('name')!r}; set vendor: nvidia or amd"
                )
            entry["vendor"] = vendor
        for _ in range(count):
            item = dict(entry)
            # Each vendor numbers its own GPUs from 0 (CUDA_VISIBLE_DEVICES and
            # ROCR_VISIBLE_DEVICES only count their vendor's devices), as detection does.
            item.setdefault("index", sum(1 for gpu in gpus if gpu.vendor == item["vendor"]))
            try:
                gpus.append(Gpu.model_validate(item))
            except Exception as exc:
                raise ValueError(f"gpus[{position}]: {_first_error(exc)}") from None
    return tuple(gpus)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors(include_input=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        return f"{loc}: {first['msg']}" if loc else str(first["msg"])
    return str(exc)


def _load_json(text: str, tool: str) -> Any:
    # Tools may print warnings first (amd-smi: "WARNING: User is missing ... groups"): start
    # at the first line that opens a JSON value.
    lines = text.splitlines()
    start = next((n for n, line in enumerate(lines) if line.lstrip()[:1] in ("{", "[")), 0)
    text = "\n".join(lines[start:])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{tool}: not valid JSON (line {exc.lineno}): {exc.msg}") from None


# --------------------------------------------------------------------------- NVIDIA


_NVIDIA_SMI_FAILURES = (
    "NVIDIA-SMI has failed",
    "No devices were found",
    "Failed to initialize NVML",
)


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits``."""
    tool = "nvidia-smi"
    gpus: list[Gpu] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line.startswith(_NVIDIA_SMI_FAILURES):
            raise ParseError(f"{tool}: {line.strip()}")
        columns = [c.strip() for c in line.split(",")]
        if len(columns) != len(NVIDIA_SMI_FIELDS):
            raise ParseError(
                f"{tool}: line {number}: expected {len(NVIDIA_SMI_FIELDS)} columns "
                f"({', '.join(NVIDIA_SMI_FIELDS)}), got {len(columns)}: {line.strip()!r}"
            )
        index, name, uuid, memory, driver, compute_cap, mig = columns
        where = f"line {number}"
        if memory in ("[N/A]", "[Not Supported]", ""):
            raise ParseError(f"{tool}: {where}: GPU {index} reports no memory.total ({memory!r})")
        gpus.append(
            Gpu(
                vendor="nvidia",
                index=_int(index, tool, f"{where} index"),
                name=name,
                uuid=uuid or None,
                vram_mb=_int(memory, tool, f"{where} memory.total"),
                driver=driver or None,
                compute_cap=None if compute_cap.startswith("[") else compute_cap,
                mig_enabled=mig == "Enabled",
                source=tool,
            )
        )
    if not gpus:
        raise ParseError(f"{tool}: no GPU lines in the output")
    return gpus


_MIG_LINE = re.compile(
    r"^\s+MIG\s+(?P<profile>\S+)\s+Device\s+(?P<index>\d+):\s+\(UUID:\s*(?P<uuid>[^)]+)\)"
)
_GPU_LINE = re.compile(r"^GPU\s+(?P<index>\d+):\s+(?P<name>.+?)\s+\(UUID:\s*(?P<uuid>[^)]+)\)")


def parse_nvidia_smi_list(text: str) -> dict[int, tuple[MigDevice, ...]]:
    """``nvidia-smi -L``: the MIG devices under each GPU index (GPUs without MIG map to ())."""
    tool = "nvidia-smi -L"
    result: dict[int, list[MigDevice]] = {}
    current: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if gpu := _GPU_LINE.match(line):
            current = int(gpu["index"])
            result[current] = []
        elif mig := _MIG_LINE.match(line):
            if current is None:
                raise ParseError(f"{tool}: line {number}: MIG device before any GPU line")
            vram = _mig_profile_mb(mig["profile"])
            if not vram:
                raise ParseError(f"{tool}: line {number}: unknown MIG profile {mig['profile']!r}")
            result[current].append(
                MigDevice(
                    index=int(mig["index"]), profile=mig["profile"], uuid=mig["uuid"], vram_mb=vram
                )
            )
        else:
            raise ParseError(f"{tool}: line {number}: not a GPU or MIG line: {line.strip()!r}")
    return {index: tuple(devices) for index, devices in result.items()}


def attach_mig_devices(gpus: list[Gpu], mig: dict[int, tuple[MigDevice, ...]]) -> list[Gpu]:
    """GPUs with MIG mode on get their MIG slices from ``nvidia-smi -L``."""
    return [
        gpu.model_copy(update={"mig_devices": mig.get(gpu.index, ())}) if gpu.mig_enabled else gpu
        for gpu in gpus
    ]


def nvml_probe() -> str:
    """Runs ON the host (``python3 -c``, see ``NVML_SNIPPET``): the GPUs NVML sees, as JSON."""
    import json

    import pynvml

    def text(value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    pynvml.nvmlInit()
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            try:
                mig = pynvml.nvmlDeviceGetMigMode(handle)[0] == 1
            except pynvml.NVMLError:
                mig = False  # not MIG-capable
            gpus.append(
                {
                    "index": index,
                    "name": text(pynvml.nvmlDeviceGetName(handle)),
                    "uuid": text(pynvml.nvmlDeviceGetUUID(handle)),
                    "memory_total_bytes": pynvml.nvmlDeviceGetMemoryInfo(handle).total,
                    "compute_cap": f"{major}.{minor}",
                    "mig_enabled": mig,
                }
            )
        driver = text(pynvml.nvmlSystemGetDriverVersion())
    finally:
        pynvml.nvmlShutdown()
    return json.dumps({"driver": driver, "gpus": gpus})


def _nvml_snippet() -> str:
    import inspect
    import textwrap

    return textwrap.dedent(inspect.getsource(nvml_probe)) + "\nprint(nvml_probe())\n"


NVML_SNIPPET = _nvml_snippet()


def parse_nvml_json(text: str) -> list[Gpu]:
    """The JSON ``nvml_probe`` prints."""
    tool = "nvml"
    data = _load_json(text, tool)
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), list):
        raise ParseError(f"{tool}: expected an object with a 'gpus' list")
    gpus = []
    for n, raw in enumerate(data["gpus"]):
        try:
            gpus.append(
                Gpu(
                    vendor="nvidia",
                    index=raw["index"],
                    name=raw["name"],
                    uuid=raw.get("uuid"),
                    vram_mb=int(raw["memory_total_bytes"]) // 2**20,
                    driver=data.get("driver"),
                    compute_cap=raw.get("compute_cap"),
                    mig_enabled=bool(raw.get("mig_enabled")),
                    source=tool,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError(f"{tool}: gpus[{n}]: {_first_error(exc)}") from None
    return gpus


# --------------------------------------------------------------------------- AMD


def parse_amd_smi_static(text: str) -> list[Gpu]:
    """``amd-smi static --json`` (a list of GPUs, or ``{"gpu_data": [...]}`` in newer ROCm)."""
    tool = "amd-smi"
    data = _load_json(text, tool)
    if isinstance(data, dict) and isinstance(data.get("gpu_data"), list):
        data = data["gpu_data"]
    if not isinstance(data, list) or not data:
        raise ParseError(f"{tool}: expected a non-empty list of GPUs")
    gpus = []
    for n, raw in enumerate(data):
        where = f"gpu[{n}]"
        if not isinstance(raw, dict):
            raise ParseError(f"{tool}: {where}: expected an object")
        asic = raw.get("asic") or {}
        vram = raw.get("vram") or {}
        if "size" not in vram:
            raise ParseError(f"{tool}: {where}: no vram.size (run amd-smi static --json)")
        name = asic.get("market_name") or (raw.get("board") or {}).get("product_name")
        if not name:
            raise ParseError(f"{tool}: {where}: no asic.market_name")
        device = str(asic.get("device_id", "")).lower().removeprefix("0x") or None
        gpus.append(
            Gpu(
                vendor="amd",
                index=_int(raw.get("gpu", n), tool, f"{where}.gpu"),
                name=name,
                uuid=(raw.get("uuid") or asic.get("asic_serial")) or None,
                vram_mb=_mib_from_text(vram["size"], tool, f"{where}.vram.size"),
                driver=(raw.get("driver") or {}).get("version"),
                compute_cap=asic.get("target_graphics_version"),
                pci_id=f"1002:{device}" if device else None,
                source=tool,
            )
        )
    return gpus


def parse_rocm_smi_json(text: str) -> list[Gpu]:
    """``rocm-smi --showproductname --showmeminfo vram --json`` (``{"card0": {...}, ...}``)."""
    tool = "rocm-smi"
    data = _load_json(text, tool)
    cards = (
        {k: v for k, v in data.items() if k.startswith("card")} if isinstance(data, dict) else {}
    )
    if not cards:
        raise ParseError(f"{tool}: expected card0, card1, ... objects")
    gpus = []
    for key in sorted(cards, key=lambda k: _int(k[4:], tool, k)):
        card = {name.lower(): value for name, value in cards[key].items()}
        name = card.get("card series") or card.get("card sku")
        if not name:
            raise ParseError(f"{tool}: {key}: no 'Card Series' (add --showproductname)")
        if "vram total memory (b)" not in card:
            raise ParseError(f"{tool}: {key}: no 'VRAM Total Memory (B)' (add --showmeminfo vram)")
        device = (
            str(card.get("card model") or card.get("device id") or "").lower().removeprefix("0x")
        )
        gpus.append(
            Gpu(
                vendor="amd",
                index=_int(key[4:], tool, key),
                name=name,
                vram_mb=_mib_from_text(card["vram total memory (b)"], tool, f"{key} VRAM"),
                compute_cap=card.get("gfx version"),
                pci_id=f"1002:{device}" if device else None,
                source=tool,
            )
        )
    return gpus


# --------------------------------------------------------------------------- lspci, /dev, CPU

_LSPCI_LINE = re.compile(
    r"^(?P<slot>[0-9a-fA-F:.]+)\s+(?P<class_name>.+?)\s+\[(?P<class>[0-9a-fA-F]{4})\]:\s+"
    r"(?P<description>.*?)\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]"
)


def parse_lspci(text: str) -> list[PciDevice]:
    """``lspci -nn``: the NVIDIA/AMD devices of GPU classes (others are skipped)."""
    devices = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LSPCI_LINE.match(line)
        if not match:
            raise ParseError(f"lspci: line {number}: not 'lspci -nn' output: {line.strip()!r}")
        vendor = PCI_VENDORS.get(match["vendor"].lower())
        if vendor is None or match["class"] not in PCI_GPU_CLASSES:
            continue
        devices.append(
            PciDevice(
                slot=match["slot"],
                class_code=match["class"],
                vendor=vendor,
                device_id=match["device"].lower(),
                description=match["description"].strip(),
            )
        )
    return devices


def parse_device_nodes(text: str) -> DeviceNodes:
    """Paths that exist, one a line: ``/dev/kfd`` and ``/dev/dri/renderD*``."""
    paths = [line.strip() for line in text.splitlines() if line.strip()]
    for path in paths:
        if path != "/dev/kfd" and not re.fullmatch(r"/dev/dri/renderD\d+", path):
            raise ParseError(f"device nodes: unexpected line {path!r}")
    return DeviceNodes(
        kfd="/dev/kfd" in paths,
        render_nodes=tuple(sorted((p for p in paths if p != "/dev/kfd"), key=_node_number)),
    )


def _node_number(path: str) -> int:
    return int(path.rsplit("renderD", 1)[1])


def parse_cpu_ram(text: str) -> tuple[int, int]:
    """``nproc; grep MemTotal /proc/meminfo`` -> (cores, RAM in MiB)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 2:
        raise ParseError(f"cpu/ram: expected 2 lines (nproc, MemTotal), got {len(lines)}")
    cores = _int(lines[0], "nproc", "line 1")
    match = re.fullmatch(r"MemTotal:\s+(\d+)\s+kB", lines[1])
    if not match:
        raise ParseError(f"/proc/meminfo: expected 'MemTotal: <n> kB', got {lines[1]!r}")
    return cores, int(match.group(1)) // 1024


# --------------------------------------------------------------------------- the whole host

# VRAM (MiB) of common GPUs by PCI id, to plan a fresh host before its driver is installed.
# Only ids that name one memory size (e.g. not 1002:744c, shared by the 20 and 24 GB RX 7900s).
PCI_VRAM_MB: dict[str, tuple[str, int]] = {
    "10de:2684": ("NVIDIA GeForce RTX 4090", 24564),
    "10de:2204": ("NVIDIA GeForce RTX 3090", 24576),
    "10de:24b0": ("NVIDIA RTX A4000", 16376),
    "10de:2230": ("NVIDIA RTX A6000", 49140),
    "10de:20b2": ("NVIDIA A100-SXM4-80GB", 81920),
    "10de:20b5": ("NVIDIA A100 80GB PCIe", 81920),
    "10de:2330": ("NVIDIA H100 80GB HBM3", 81559),
    "10de:2331": ("NVIDIA H100 PCIe", 81559),
    "10de:27b8": ("NVIDIA L4", 23034),
    "10de:26b9": ("NVIDIA L40S", 46068),
    "1002:74a1": ("AMD Instinct MI300X", 196592),
    "1002:740f": ("AMD Instinct MI210", 65520),
}

# Sections of the detection script's output (``roles/gpu/facts.py``), in order.
SECTIONS = ("nvidia-smi", "nvidia-smi-L", "nvml", "amd-smi", "rocm-smi", "lspci", "dev", "cpu")
MISSING = "@@missing"


class Section(BaseModel):
    """One tool's answer in the detection output: its stdout, and how it exited."""

    model_config = ConfigDict(frozen=True)

    text: str = ""
    exit_code: int | None = None
    missing: bool = False

    @property
    def ok(self) -> bool:
        return not self.missing and self.exit_code in (0, None) and bool(self.text.strip())

    @property
    def failed(self) -> bool:
        return not self.missing and self.exit_code not in (0, None)


def split_sections(lines: Iterable[str]) -> dict[str, Section]:
    """``@@<name>`` starts a section, ``@@exit <n>`` ends it, ``@@missing``: tool absent."""
    bodies: dict[str, list[str]] = {}
    exits: dict[str, int] = {}
    missing: set[str] = set()
    current: str | None = None
    for line in lines:
        marker = line.strip()
        if marker.startswith("@@") and marker[2:] in SECTIONS:
            current = marker[2:]
            bodies[current] = []
        elif current is None:
            continue
        elif marker == MISSING:
            missing.add(current)
        elif marker.startswith("@@exit "):
            exits[current] = _int(marker[7:], "detection", f"exit status of {current}")
        else:
            bodies[current].append(line)
    return {
        name: Section(text="\n".join(body), exit_code=exits.get(name), missing=name in missing)
        for name, body in bodies.items()
    }


def _failure(name: str, section: Section) -> str:
    first = next((line for line in section.text.splitlines() if line.strip()), "no output")
    return f"{name} exited {section.exit_code}: {first.strip()}"


def hardware_from_sections(sections: dict[str, Section]) -> HostHardware:
    """Combine every tool's answer into one HostHardware.

    NVIDIA: nvidia-smi (with MIG slices from ``nvidia-smi -L``), else NVML. AMD: amd-smi, else
    rocm-smi. A tool that exits non-zero (no driver loaded yet) is noted and skipped; output a
    tool printed with success but that does not parse is a ParseError. GPUs only lspci sees get
    their VRAM from ``PCI_VRAM_MB``; an unknown one is a ParseError asking for ``gpus:``, unless
    it is AMD and other GPUs were found (then most likely a Ryzen's integrated graphics: noted,
    left out).
    """
    empty = Section(missing=True)
    notes: list[str] = []
    for name, section in sections.items():
        if section.failed:
            notes.append(_failure(name, section))

    nvidia: list[Gpu] = []
    smi = sections.get("nvidia-smi", empty)
    if smi.ok:
        nvidia = parse_nvidia_smi_csv(smi.text)
        mig_list = sections.get("nvidia-smi-L", empty)
        if mig_list.ok and any(gpu.mig_enabled for gpu in nvidia):
            nvidia = attach_mig_devices(nvidia, parse_nvidia_smi_list(mig_list.text))
    if not nvidia and (nvml := sections.get("nvml", empty)).ok:
        nvidia = parse_nvml_json(nvml.text)

    amd: list[Gpu] = []
    if (amd_smi := sections.get("amd-smi", empty)).ok:
        amd = parse_amd_smi_static(amd_smi.text)
    elif (rocm := sections.get("rocm-smi", empty)).ok:
        amd = parse_rocm_smi_json(rocm.text)

    lspci = sections.get("lspci", empty)
    pci = parse_lspci(lspci.text) if lspci.ok else []
    gpus = nvidia + amd
    unknown: list[tuple[PciDevice, str]] = []  # lspci-only devices of no known VRAM
    for vendor, found in (("nvidia", nvidia), ("amd", amd)):
        undriven = [d for d in pci if d.vendor == vendor]
        if found or not undriven:
            continue
        for index, device in enumerate(undriven):
            pci_id = f"{PCI_VENDORS_BY_NAME[vendor]}:{device.device_id}"
            if pci_id not in PCI_VRAM_MB:
                unknown.append((device, pci_id))
                continue
            name, vram = PCI_VRAM_MB[pci_id]
            gpus.append(
                Gpu(
                    vendor=device.vendor,
                    index=index,
                    name=name,
                    vram_mb=vram,
                    pci_id=pci_id,
                    source="lspci",
                )
            )
        if known := len(undriven) - sum(1 for d, _ in unknown if d.vendor == vendor):
            notes.append(f"{known} {vendor} GPU(s) seen by lspci only: VRAM from the PCI table")
    for device, pci_id in unknown:
        what = (
            f"lspci: {device.slot} {device.description} [{pci_id}]: no {device.vendor} driver "
            "reports this GPU yet and its VRAM is not in deploy.hardware.parsers.PCI_VRAM_MB"
        )
        if not gpus or device.vendor != "amd":
            raise ParseError(f"{what}; set gpus: in the host's data")
        # Next to GPUs that are known, an unknown AMD one is most likely a CPU's integrated
        # graphics (a Ryzen's Radeon, e.g. Raphael [1002:164e]): left out, not fatal. NVIDIA
        # makes no x86 integrated graphics: an unknown NVIDIA GPU stays an error.
        notes.append(f"{what}: left out (integrated graphics?); list it in gpus: to use it")

    dev = sections.get("dev", empty)
    nodes = parse_device_nodes(dev.text) if not dev.missing else DeviceNodes()
    cpu = sections.get("cpu", empty)
    if not cpu.ok:
        raise ParseError("cpu/ram: the detection output has no nproc/MemTotal answer")
    cores, ram_mb = parse_cpu_ram(cpu.text)
    return HostHardware(
        gpus=tuple(gpus),
        cpu_cores=cores,
        ram_mb=ram_mb,
        source="+".join(sorted({gpu.source for gpu in gpus})) or "cpu",
        pci_devices=tuple(pci),
        device_nodes=nodes,
        notes=tuple(notes),
    )
