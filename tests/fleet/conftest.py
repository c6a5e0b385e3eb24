"""Fixtures for the container-fleet tier (marker ``fleet``): podman hosts, pyinfra runs.

Needs root, podman and the host image (``sudo bash deploy/setup.sh --all``); without them the
tests are skipped with that instruction (they fail instead when ``MODELFLEET_REQUIRE_REAL`` is
set, as in CI). Every fleet a test brings up has its own name
(``mft<random>``), so parallel sessions and a running demo fleet are never touched, and it is
torn down at the end even when a test fails.

Fixtures:

- ``local_fleet``: the three hosts of ``inventory/local.py`` (session scope); a
  :class:`LocalFleet` with ``.hosts``, ``.env`` (the environment for pyinfra / pytest
  subprocesses that makes ``inventory/local.py`` point at this fleet) and ``.by_name``.
- ``fleet_factory``: bring up any list of :class:`deploy.lab.localfleet.ContainerHost` as a fresh
  fleet (torn down at the end of the test).
- ``run_pyinfra(inventory_or_targets, deploy, env=..., data=...)``: runs
  ``pyinfra -y --json`` and returns the parsed JSON (``results.totals`` etc.), failing with
  pyinfra's own output when it exits non-zero.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelfleet.deploy.lab import localfleet

REPO = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fleet)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the container fleet needs root (rootful podman)"
    if shutil.which("podman") is None:
        return "podman is missing: run sudo bash deploy/setup.sh --all"
    image = subprocess.run(["podman", "image", "exists", localfleet.IMAGE], check=False)
    if image.returncode != 0:
        return f"host image {localfleet.IMAGE} is missing: run sudo bash deploy/setup.sh --all"
    return None


@pytest.fixture(scope="session")
def fleet_available() -> None:
    reason = _skip_reason()
    if reason and os.environ.get("MODELFLEET_REQUIRE_REAL"):
        pytest.fail(f"MODELFLEET_REQUIRE_REAL is set (CI) but {reason}")
    if reason:
        pytest.skip(reason)


@dataclass
class LocalFleet:
    """A fleet that is up: its hosts and how to point tools at it."""

    name: str
    hosts: list[localfleet.RunningHost]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def by_name(self) -> dict[str, localfleet.RunningHost]:
        return {host.name: host for host in self.hosts}

    def podman_targets(self) -> str:
        """``@podman/a,@podman/b`` for ``pyinfra`` without an inventory file."""
        return ",".join(f"@podman/{host.container}" for host in self.hosts)

    def testinfra_hosts(self) -> str:
        """``podman://a,podman://b`` for ``pytest --hosts``."""
        return ",".join(f"podman://{host.container}" for host in self.hosts)


def new_fleet_name() -> str:
    return f"mft{secrets.token_hex(3)}"


def _fleet_env(name: str) -> dict[str, str]:
    return {**os.environ, "MODELFLEET_FLEET": name}


@pytest.fixture(scope="session")
def local_fleet(fleet_available: None) -> Iterator[LocalFleet]:
    name = new_fleet_name()
    try:
        hosts = localfleet.up(localfleet.LOCAL_HOSTS, fleet=name)
        yield LocalFleet(name=name, hosts=hosts, env=_fleet_env(name))
    finally:
        localfleet.down(name)


@pytest.fixture
def fleet_factory(
    fleet_available: None,
) -> Iterator[Callable[[Sequence[localfleet.ContainerHost]], LocalFleet]]:
    names: list[str] = []

    def make(hosts: Sequence[localfleet.ContainerHost]) -> LocalFleet:
        name = new_fleet_name()
        names.append(name)
        return LocalFleet(name=name, hosts=localfleet.up(hosts, fleet=name), env=_fleet_env(name))

    try:
        yield make
    finally:
        for name in names:
            localfleet.down(name)


class PyinfraFailed(AssertionError):
    """pyinfra exited non-zero; the message carries its stderr tail."""


def run_pyinfra(
    targets: str,
    deploy: str,
    env: dict[str, str] | None = None,
    data: dict[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    check: bool = True,
    command: bool = False,
) -> dict[str, Any]:
    """``pyinfra -y --json TARGETS DEPLOY`` from the repository root; returns the parsed JSON.

    ``data`` values become ``--data key=value`` (JSON-encoded when not a string). With
    ``command=True``, DEPLOY is a shell command run by ``pyinfra TARGETS exec -- DEPLOY``.
    With ``check=False`` a failed run returns ``{"returncode": N, "stderr": ..., **json}``.
    """
    args = [PYINFRA, "-y", "--json"]
    for key, value in (data or {}).items():
        args += ["--data", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    args += [*extra_args, targets]
    args += ["exec", "--", deploy] if command else [deploy]
    done = subprocess.run(
        args, cwd=REPO, env=env or dict(os.environ), capture_output=True, text=True, check=False
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
    except json.JSONDecodeError:
        result = {"stdout": done.stdout}
    if check and done.returncode != 0:
        raise PyinfraFailed(
            f"pyinfra {' '.join(args[3:])} exited {done.returncode}:\n{done.stderr[-4000:]}"
        )
    result["returncode"] = done.returncode
    result["stderr"] = done.stderr
    return result


@pytest.fixture(name="run_pyinfra")
def run_pyinfra_fixture() -> Callable[..., dict[str, Any]]:
    return run_pyinfra
