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

# PCI vendor ids and display-controller classes (VGA, 3D, "display controller").
PCI_VENDORS: dict[str, Vendor] = {"10de": "nvidia", "1002": "amd"}
PCI_GPU_CLASSES = ("0300", "0302", "0380")

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
    the position, and ``count`` repeats an entry)::

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


class HostHardware(BaseModel):
    """Everything the planner needs to know about one host's compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: tuple[Gpu, ...] = ()
    cpu_cores: int = Field(default=1, ge=1)
    ram_mb: int = Field(default=0, ge=0)
    source: str = "override"


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


def expand_gpu_overrides(entries: Iterable[dict[str, Any]]) -> tuple[Gpu, ...]:
    """Turn host-data ``gpus:`` entries into Gpu objects (``count`` repeats, index by position).

    Raises ValueError (with the entry's position) for a bad entry; ``deploy.fleet`` wraps it
    with the file, host and key.
    """
    gpus: list[Gpu] = []
    for position, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise ValueError(f"gpus[{position}]: expected a mapping, got {type(raw).__name__}")
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
            item.setdefault("index", len(gpus))
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
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{tool}: not valid JSON (line {exc.lineno}): {exc.msg}") from None
