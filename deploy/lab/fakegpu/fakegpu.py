#!/usr/bin/env python3
"""Stand-in GPU tools for emulated fleet hosts: nvidia-smi, amd-smi, rocm-smi, lspci, mokutil.

This is a STAND-IN, not the vendors' tools. One script answers for every tool, picked by the
name it is called as (``/usr/local/bin/nvidia-smi -> fakegpu.py``), and prints what the real
tool prints for the GPUs in ``/etc/modelfleet/fakegpu.json`` (written by
``deploy/lab/localfleet.py`` from ``deploy/lab/fakegpu/profiles.json``). Only the options the
project's facts and roles use are implemented; anything else exits 2 and says so, so a fact that
starts asking something new fails loudly instead of parsing made-up output.

Python 3 standard library only: it runs on the bare host image.

Example, on a host emulating 2 x RTX 4090::

    $ nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits
    0, NVIDIA GeForce RTX 4090, 24564
    1, NVIDIA GeForce RTX 4090, 24564
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

CONFIG = Path(os.environ.get("FAKEGPU_CONFIG", "/etc/modelfleet/fakegpu.json"))
STATE = Path(os.environ.get("FAKEGPU_STATE", "/var/lib/modelfleet-fakegpu/state.json"))

PCI_VENDORS = {
    "10de": "NVIDIA Corporation",
    "1002": "Advanced Micro Devices, Inc. [AMD/ATI]",
    "8086": "Intel Corporation",
}
PCI_CLASSES = {
    "0200": "Ethernet controller",
    "0300": "VGA compatible controller",
    "0302": "3D controller",
    "0380": "Display controller",
    "0600": "Host bridge",
    "1200": "Processing accelerators",
}
# Devices every emulated host has besides its GPUs, so lspci consumers must filter.
BASE_PCI = [
    {"pci_slot": "00:00.0", "pci_class": "0600", "vendor_id": "8086", "pci_device": "1237",
     "pci_device_name": "440FX - 82441FX PMC [Natoma]", "rev": "02"},
    {"pci_slot": "00:03.0", "pci_class": "0200", "vendor_id": "8086", "pci_device": "1533",
     "pci_device_name": "I210 Gigabit Network Connection", "rev": "03"},
]  # fmt: skip
VENDOR_IDS = {"nvidia": "10de", "amd": "1002"}


class UsageError(Exception):
    """An option this stand-in does not implement (exit 2, like a real usage error)."""


def load_config() -> dict[str, Any]:
    if not CONFIG.is_file():
        return {"profile": "none", "gpus": [], "secure_boot": False, "efi": True}
    config: dict[str, Any] = json.loads(CONFIG.read_text())
    return config


def gpus_of(config: dict[str, Any], vendor: str) -> list[dict[str, Any]]:
    return [gpu for gpu in config.get("gpus", []) if gpu["vendor"] == vendor]


def load_state() -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(STATE.read_text())
        return state
    except (OSError, ValueError):
        return {}


def save_state(state: dict[str, Any]) -> None:
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state))


def bus_id(gpu: dict[str, Any]) -> str:
    """nvidia-smi style PCI bus id: 00000000:01:00.0."""
    return f"00000000:{gpu['pci_slot'].upper()}"


# --------------------------------------------------------------------------- nvidia-smi

NVIDIA_FIELDS = {
    "index": ("", lambda i, g, s: str(i)),
    "name": ("", lambda i, g, s: g["name"]),
    "uuid": ("", lambda i, g, s: g["uuid"]),
    "memory.total": ("MiB", lambda i, g, s: str(g["vram_mb"])),
    "memory.used": ("MiB", lambda i, g, s: "0"),
    "memory.free": ("MiB", lambda i, g, s: str(g["vram_mb"])),
    "driver_version": ("", lambda i, g, s: driver_version(g)),
    "compute_cap": ("", lambda i, g, s: g["compute_cap"]),
    "mig.mode.current": ("", lambda i, g, s: "[N/A]"),
    "pci.bus_id": ("", lambda i, g, s: bus_id(g)),
    "persistence_mode": ("", lambda i, g, s: "Enabled" if s.get("persistence") else "Disabled"),
    "utilization.gpu": ("%", lambda i, g, s: "0"),
    "temperature.gpu": ("", lambda i, g, s: "34"),
}


def driver_version(gpu: dict[str, Any]) -> str:
    # The stand-in driver package's wrapper sets this to the version it "installed".
    return os.environ.get("FAKEGPU_NVIDIA_DRIVER_VERSION") or gpu["driver_version"]


def nvidia_smi(args: list[str], config: dict[str, Any]) -> int:
    gpus = gpus_of(config, "nvidia")
    if not gpus:
        print(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running."
        )
        return 9
    state = load_state()
    options = dict(_split_options(args))
    selected = list(enumerate(gpus))
    if "-i" in options or "--id" in options:
        wanted = {int(i) for i in (options.get("-i") or options["--id"]).split(",")}
        selected = [(i, g) for i, g in selected if i in wanted]
    if "--query-gpu" in options:
        fmt = options.get("--format", "csv").split(",")
        if "csv" not in fmt:
            raise UsageError("--format must include csv")
        fields = options["--query-gpu"].split(",")
        for field in fields:
            if field not in NVIDIA_FIELDS:
                print(f'Field "{field}" is not a valid field to query.\n', file=sys.stderr)
                return 2
        if "noheader" not in fmt:
            print(", ".join(_header(f, "nounits" not in fmt) for f in fields))
        for index, gpu in selected:
            print(", ".join(_value(f, index, gpu, state, "nounits" not in fmt) for f in fields))
        return 0
    if "--query-compute-apps" in options:
        if "noheader" not in options.get("--format", ""):
            print(options["--query-compute-apps"].replace(",", ", "))
        return 0
    if "-L" in options or "--list-gpus" in options:
        for index, gpu in selected:
            print(f"GPU {index}: {gpu['name']} (UUID: {gpu['uuid']})")
        return 0
    mode = options.get("-pm", options.get("--persistence-mode"))
    if mode is not None:
        state["persistence"] = mode in ("1", "ENABLED", "enabled")
        save_state(state)
        word = "Enabled" if state["persistence"] else "Disabled"
        for _, gpu in selected:
            print(f"{word} persistence mode for GPU {bus_id(gpu)}.")
        print("All done.")
        return 0
    if options:
        raise UsageError(f"nvidia-smi stand-in: unsupported options {sorted(options)}")
    _nvidia_table(gpus, state)
    return 0


def _header(field: str, units: bool) -> str:
    unit = NVIDIA_FIELDS[field][0]
    return f"{field} [{unit}]" if units and unit else field


def _value(field: str, index: int, gpu: dict[str, Any], state: dict[str, Any], units: bool) -> str:
    unit, get = NVIDIA_FIELDS[field]
    value = get(index, gpu, state)
    return f"{value} {unit}" if units and unit and value[:1].isdigit() else value


def _nvidia_table(gpus: list[dict[str, Any]], state: dict[str, Any]) -> None:
    first = gpus[0]
    persistence = "On" if state.get("persistence") else "Off"
    print("+" + "-" * 91 + "+")
    print(
        f"| NVIDIA-SMI {driver_version(first):<22}Driver Version: {driver_version(first):<16}"
        f"CUDA Version: {first.get('cuda_version', '12.4'):<9}|"
    )
    print("|" + "-" * 91 + "|")
    for index, gpu in enumerate(gpus):
        print(
            f"| {index:>3}  {gpu['name']:<30} {persistence:>3} | {bus_id(gpu):>16} Off |"
            f"  0MiB / {gpu['vram_mb']}MiB |"
        )
    print("+" + "-" * 91 + "+")


def _split_options(args: list[str]) -> list[tuple[str, str]]:
    """``--a=b``, ``--a b``, ``-i 0`` and bare flags -> (option, value) pairs."""
    takes_value = {"-i", "--id", "-pm", "--format", "--query-gpu", "--query-compute-apps"}
    pairs: list[tuple[str, str]] = []
    items = iter(args)
    for arg in items:
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
            pairs.append((key, value))
        elif arg in takes_value:
            pairs.append((arg, next(items, "")))
        else:
            pairs.append((arg, ""))
    return pairs


# --------------------------------------------------------------------------- amd-smi / rocm-smi


def amd_smi(args: list[str], config: dict[str, Any]) -> int:
    gpus = gpus_of(config, "amd")
    command = args[0] if args else "help"
    as_json = "--json" in args
    if command == "version":
        rocm = gpus[0]["rocm_version"] if gpus else "6.4.1"
        if as_json:
            print(json.dumps([{"tool": "AMDSMI Tool", "version": "25.5.1", "rocm_version": rocm}]))
        else:
            print(f"AMDSMI Tool: 25.5.1 | AMDSMI Library version: 25.5.1 | ROCm version: {rocm}")
        return 0
    if not gpus:
        message = "AMD-SMI: amdgpu driver not loaded (AMDSMI_STATUS_DRIVER_NOT_LOADED)"
        print(message, file=sys.stderr)
        return 1
    if command == "list":
        rows = [
            {"gpu": i, "bdf": f"0000:{g['pci_slot']}", "uuid": g["uuid"], "kfd_id": 1000 + i}
            for i, g in enumerate(gpus)
        ]
        print(json.dumps(rows, indent=4) if as_json else _amd_text(rows))
        return 0
    if command == "static":
        rows = [_amd_static(i, g) for i, g in enumerate(gpus)]
        print(json.dumps(rows, indent=4) if as_json else _amd_text(rows))
        return 0
    if command == "metric" and "--mem-usage" in args:
        rows = [
            {
                "gpu": i,
                "mem_usage": {
                    "total_vram": {"value": g["vram_mb"], "unit": "MB"},
                    "used_vram": {"value": 0, "unit": "MB"},
                    "free_vram": {"value": g["vram_mb"], "unit": "MB"},
                },
            }
            for i, g in enumerate(gpus)
        ]
        print(json.dumps(rows, indent=4) if as_json else _amd_text(rows))
        return 0
    raise UsageError(f"amd-smi stand-in: unsupported command {' '.join(args)!r}")


def _amd_static(index: int, gpu: dict[str, Any]) -> dict[str, Any]:
    return {
        "gpu": index,
        "asic": {
            "market_name": gpu["name"],
            "vendor_id": "0x1002",
            "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
            "device_id": f"0x{gpu['pci_device']}",
            "rev_id": "0x00",
            "target_graphics_version": gpu["gfx_version"],
        },
        "bus": {"bdf": f"0000:{gpu['pci_slot']}"},
        "vram": {"type": "HBM", "size": {"value": gpu["vram_mb"], "unit": "MB"}},
        "driver": {"name": "amdgpu", "version": gpu["driver_version"]},
    }


def _amd_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        lines.append(f"GPU: {row['gpu']}")
        lines.extend(f"    {key.upper()}: {value}" for key, value in row.items() if key != "gpu")
    return "\n".join(lines)


def rocm_smi(args: list[str], config: dict[str, Any]) -> int:
    gpus = gpus_of(config, "amd")
    if not gpus:
        print("ERROR:root:Driver not initialized (amdgpu not found in modules)", file=sys.stderr)
        return 1
    known = {"--showproductname", "--showmeminfo", "vram", "--json", "--showbus", "--showid"}
    unknown = [a for a in args if a not in known]
    if unknown:
        raise UsageError(f"rocm-smi stand-in: unsupported options {unknown}")
    cards: dict[str, dict[str, str]] = {}
    for index, gpu in enumerate(gpus):
        card: dict[str, str] = {}
        if "--showproductname" in args:
            card |= {
                "Card Series": gpu["name"],
                "Card Model": f"0x{gpu['pci_device']}",
                "Card Vendor": PCI_VENDORS["1002"],
                "Card SKU": "M3000100",
                "GFX Version": gpu["gfx_version"],
            }
        if "--showmeminfo" in args:
            card["VRAM Total Memory (B)"] = str(gpu["vram_mb"] * 2**20)
            card["VRAM Total Used Memory (B)"] = "0"
        if "--showbus" in args:
            card["PCI Bus"] = f"0000:{gpu['pci_slot'].upper()}"
        if "--showid" in args:
            card["Device ID"] = f"0x{gpu['pci_device']}"
        cards[f"card{index}"] = card
    if "--json" in args:
        print(json.dumps(cards))
    else:
        for name, card in cards.items():
            for key, value in card.items():
                print(f"GPU[{name[4:]}]\t\t: {key}: {value}")
    return 0


# --------------------------------------------------------------------------- lspci / mokutil


def lspci(args: list[str], config: dict[str, Any]) -> int:
    options = dict(_split_lspci(args))
    devices = list(BASE_PCI)
    for gpu in config.get("gpus", []):
        devices.append({**gpu, "vendor_id": VENDOR_IDS[gpu["vendor"]], "rev": "a1"})
    if "-d" in options:
        devices = [d for d in devices if _matches(d, options["-d"])]
    devices.sort(key=lambda d: d["pci_slot"])
    machine, numeric_only = "-mm" in options, "-n" in options
    with_ids = "-nn" in options
    for dev in devices:
        slot = f"0000:{dev['pci_slot']}" if "-D" in options else dev["pci_slot"]
        cls_id, vendor_id, dev_id = dev["pci_class"], dev["vendor_id"], dev["pci_device"]
        cls, vendor, name = PCI_CLASSES[cls_id], PCI_VENDORS[vendor_id], dev["pci_device_name"]
        if numeric_only:
            print(f"{slot} {cls_id}: {vendor_id}:{dev_id} (rev {dev['rev']})")
        elif machine:
            ids = (f" [{cls_id}]", f" [{vendor_id}]", f" [{dev_id}]") if with_ids else ("", "", "")
            print(
                f'{slot} "{cls}{ids[0]}" "{vendor}{ids[1]}" "{name}{ids[2]}" -r{dev["rev"]} '
                f'"{vendor}{ids[1]}" "Device{" [0000]" if with_ids else ""}"'
            )
        else:
            tail = f" [{vendor_id}:{dev_id}]" if with_ids else ""
            cls_text = f"{cls} [{cls_id}]" if with_ids else cls
            print(f"{slot} {cls_text}: {vendor} {name}{tail} (rev {dev['rev']})")
    return 0


def _split_lspci(args: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    items = iter(args)
    for arg in items:
        if arg == "-d":
            pairs.append(("-d", next(items, "")))
        elif arg in ("-mm", "-nn", "-n", "-D", "-m"):
            pairs.append(("-mm" if arg == "-m" else arg, ""))
        else:
            raise UsageError(f"lspci stand-in: unsupported option {arg!r}")
    return pairs


def _matches(device: dict[str, Any], selector: str) -> bool:
    """``-d [vendor]:[device][:class]``; empty parts match anything."""
    parts = [*selector.split(":"), "", ""][:3]
    wanted = (device["vendor_id"], device["pci_device"], device["pci_class"])
    return all(not part or part.lower() == have for part, have in zip(parts, wanted, strict=True))


def mokutil(args: list[str], config: dict[str, Any]) -> int:
    if args != ["--sb-state"]:
        raise UsageError(f"mokutil stand-in: only --sb-state is implemented, got {args}")
    if not config.get("efi", True):
        print("EFI variables are not supported on this system", file=sys.stderr)
        return 1
    print("SecureBoot enabled" if config.get("secure_boot") else "SecureBoot disabled")
    return 0


TOOLS = {
    "nvidia-smi": nvidia_smi,
    "amd-smi": amd_smi,
    "rocm-smi": rocm_smi,
    "lspci": lspci,
    "mokutil": mokutil,
}


def main(argv: list[str]) -> int:
    tool = Path(argv[0]).name
    args = argv[1:]
    if tool not in TOOLS and args and args[0] in TOOLS:  # fakegpu.py nvidia-smi -L
        tool, args = args[0], args[1:]
    if tool not in TOOLS:
        print(f"fakegpu: call me as one of {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    try:
        return TOOLS[tool](args, load_config())
    except UsageError as exc:
        print(f"{tool}: {exc} (modelfleet stand-in)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
