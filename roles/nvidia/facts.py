"""Facts for the nvidia role: Secure Boot, the installed driver, CDI devices, docker's runtime."""

from __future__ import annotations

import json

from pyinfra.api import FactBase

# SecureBoot-<EFI global variable GUID>: 4 attribute bytes, then 1 = enabled.
_SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


class SecureBootState(FactBase[str]):
    """
    Secure Boot state: ``"enabled"``, ``"disabled"`` or ``"unsupported"`` (no EFI).

    Reads ``mokutil --sb-state`` when mokutil is installed, else the EFI variable.

    .. code:: python

        "disabled"
    """

    def command(self) -> str:
        return (
            "if command -v mokutil >/dev/null 2>&1; then mokutil --sb-state 2>&1 || true; "
            f"elif [ -r {_SECURE_BOOT_VAR} ]; then "
            f"echo \"efivar $(od -An -t u1 {_SECURE_BOOT_VAR} | awk '{{print $5}}')\"; "
            "else echo 'EFI variables are not supported on this system'; fi"
        )

    @staticmethod
    def default() -> str:
        return "unsupported"

    def process(self, output: list[str]) -> str:
        text = " ".join(output).lower().replace(" ", "")
        if "securebootenabled" in text or text == "efivar1":
            return "enabled"
        if "securebootdisabled" in text or text == "efivar0":
            return "disabled"
        return "unsupported"


class NvidiaGpuIds(FactBase[list[tuple[str, str]]]):
    """
    ``(index, uuid)`` of each GPU the installed driver sees; empty without a driver.

    .. code:: python

        [("0", "GPU-5a1c0e5d-..."), ("1", "GPU-5a1c0e5d-...")]
    """

    def requires_command(self) -> str:
        return "nvidia-smi"

    def command(self) -> str:
        return "nvidia-smi --query-gpu=index,uuid --format=csv,noheader 2>/dev/null || true"

    @staticmethod
    def default() -> list[tuple[str, str]]:
        return []

    def process(self, output: list[str]) -> list[tuple[str, str]]:
        rows = []
        for line in output:
            parts = [part.strip() for part in line.split(",")]
            if len(parts) == 2 and parts[0].isdigit():
                rows.append((parts[0], parts[1]))
        return rows


class CdiDevices(FactBase[list[str]]):
    """
    CDI device names ``nvidia-ctk cdi list`` finds (``/etc/cdi``, ``/var/run/cdi``).

    .. code:: python

        ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-5a1c...", "nvidia.com/gpu=all"]
    """

    def requires_command(self) -> str:
        return "nvidia-ctk"

    def command(self) -> str:
        return "nvidia-ctk cdi list 2>/dev/null || true"

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if "=" in line and "/" in line.split("=")[0]]


class DockerNvidiaRuntime(FactBase[bool]):
    """
    Whether docker's daemon.json registers the ``nvidia`` runtime.

    .. code:: python

        True
    """

    def command(self, path: str = "/etc/docker/daemon.json") -> str:
        return f"cat {path} 2>/dev/null || true"

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        try:
            config = json.loads("\n".join(output) or "{}")
        except json.JSONDecodeError:
            return False
        return isinstance(config, dict) and "nvidia" in (config.get("runtimes") or {})
