"""Headless Debian chromium for the dashboard checks (router tests and the demo test)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, with this machine's closed network: no sandbox, no background connections.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def run_chromium(url: str, profile: Path, *extra: str, budget_ms: int = 4000) -> str:
    """Load ``url``, let its scripts run for ``budget_ms`` of virtual time, return stdout.

    Pass ``--dump-dom`` for the final DOM, or ``--screenshot=PATH`` (with
    ``--window-size=W,H``) for a picture.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (bash deploy/setup.sh --all)")
    proc = subprocess.run(
        [
            CHROMIUM,
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *extra,
            url,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout.decode()
