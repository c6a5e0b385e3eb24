"""Every knob of the GPU detection role, with its default. Set them in host or group data."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # The GPUs of the host, instead of detecting them (offline planning, test hosts, hosts
    # whose tools lie). A list of {name, vram_mb, [vendor], [count], [uuid], [index], ...};
    # [] says "no GPU" (CPU-only). None: detect with the facts.
    "gpus": None,
    # RAM (MiB) and CPU cores; None: detect (nproc, /proc/meminfo).
    "ram_mb": None,
    "cpu_cores": None,
}
