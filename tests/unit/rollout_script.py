"""The router's rollout script (roles/router/files/router-rollout.py) run in a temp directory,
with systemctl faked (and its HTTP calls, unless asked for real): shared by the tests of what it
does on a config, listen, unit or secret change."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROLLOUT_SCRIPT = Path(__file__).parents[2] / "roles" / "router" / "files" / "router-rollout.py"


def rollout_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("router_rollout", ROLLOUT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Rollout:
    status: int
    did: list[str]  # systemctl calls, in order
    asked: list[str]  # "readyz <address>" / "reload <address>"


def run_rollout(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    live: str,
    new: str,
    *flags: str,
    ready_after_switch: bool = True,
    real_http: bool = False,
) -> Rollout:
    """The script on a socket-activated router running release r1 with ``listen: live``,
    given the same release with ``listen: new``; systemctl faked (and HTTP, unless
    ``real_http``)."""
    script = rollout_script()
    root, release = tmp_path / "opt", tmp_path / "opt" / "releases" / "r1"
    release.mkdir(parents=True)
    (root / "current").symlink_to(release)
    config, candidate, token = tmp_path / "router.yaml", tmp_path / "next.yaml", tmp_path / "tok"
    config.write_text(f"listen: {json.dumps(live)}\nbackends: []\n")
    candidate.write_text(f"listen: {json.dumps(new)}\nbackends: []\nrecent_decisions: 5\n")
    token.write_text("tok\n")
    did: list[str] = []
    asked: list[str] = []

    def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        did.append(" ".join(args))
        return subprocess.CompletedProcess(["systemctl", *args], 0, "", "")

    def readyz(address: str, timeout_s: float) -> tuple[bool, str]:
        asked.append(f"readyz {address}")
        first_after_switch = sum(a.startswith("readyz") for a in asked) == 1
        return (ready_after_switch or not first_after_switch), "HTTP 200"

    def admin_reload(address: str, token: str) -> tuple[bool, str]:
        asked.append(f"reload {address}")
        return True, "reload HTTP 200"

    monkeypatch.setattr(script, "systemctl", systemctl)
    monkeypatch.setattr(script, "check_candidate", lambda args, config: (True, "HTTP 200"))
    monkeypatch.setattr(script, "journal_tail", lambda unit: "")
    monkeypatch.setattr(script, "socket_activated", lambda service: True, raising=False)
    if not real_http:
        monkeypatch.setattr(script, "readyz", readyz)
        monkeypatch.setattr(script, "admin_reload", admin_reload)
    argv = ["router-rollout.py", "--release", str(release), "--root", str(root)]
    argv += ["--config", str(config), "--candidate", str(candidate), "--service", "mf-router"]
    argv += ["--user", "modelfleet", "--token", str(token), "--side-port", "18434", *flags]
    monkeypatch.setattr(sys, "argv", argv)
    return Rollout(script.main(), did, asked)
