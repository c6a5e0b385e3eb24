"""Suite-wide settings.

``MODELFLEET_NO_SKIPS=1`` (set by ``.ci/run``) turns every skipped test into a failure: the
tiers that need podman, the llama-server build or chromium skip on a bare laptop, but CI
installs all of them, so a skip there means a missing install step, not a choice.

The exception is ``tests/infra``: it runs against whatever fleet it is pointed at, and skips
the checks that do not apply to a host (a router check on a backend-only host).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

NO_SKIPS = os.environ.get("MODELFLEET_NO_SKIPS", "") not in ("", "0")
PER_HOST_CHECKS = Path(__file__).parent / "infra"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    applies_per_host = PER_HOST_CHECKS in Path(str(item.fspath)).parents
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail") and not applies_per_host:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but MODELFLEET_NO_SKIPS is set: {reason}"
    return report
