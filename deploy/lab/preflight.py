"""Checks that run before the demo touches anything, each with a fix the user can type.

A check returns ``None`` when all is well, or a :class:`Problem` that says what is
wrong and how to fix it. ``run_checks`` collects every problem, so the user sees
them all at once instead of fixing them one by one.

Example::

    problems = run_checks([check_root(), check_disk(Path("/var/lib/containers"), 6)])
    for problem in problems:
        print(problem)
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}\n    fix: {self.fix}"


def check_root() -> Problem | None:
    """Podman containers with systemd and apt installs need root."""
    if os.geteuid() != 0:
        return Problem(
            "not running as root (the demo runs rootful podman and installs Debian packages)",
            "run it again with sudo, e.g. `sudo .venv/bin/modelfleet demo up`",
        )
    return None


def check_command(name: str, package: str) -> Problem | None:
    """A program the demo needs is on PATH."""
    if shutil.which(name) is None:
        return Problem(
            f"`{name}` is not installed",
            f"run `bash deploy/setup.sh --all` (or `apt-get install {package}`)",
        )
    return None


def check_disk(path: Path, need_gb: float) -> Problem | None:
    """Enough free space where the images, builds and models go."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    free_gb = shutil.disk_usage(probe).free / 1e9
    if free_gb < need_gb:
        return Problem(
            f"only {free_gb:.1f} GB free on {probe} (the demo needs about {need_gb:.0f} GB)",
            f"free some space on {probe}, or point MODELFLEET_CACHE at a bigger disk",
        )
    return None


def port_in_use(host: str, port: int) -> bool:
    """True when something already holds ``host:port`` on this machine.

    The check binds where the fleet will listen, the way the fleet's server will, and never
    connects anywhere: a connection to an address this machine does not have (podman's bridge
    before its first container) would go wherever the default route leads. An address that is
    not (yet) on this machine is free by definition: nothing can listen there.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As asyncio/aiohttp servers bind: a port left in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return False


def check_port(
    host: str, port: int, owner: str, ours: bool = False, flag: str = "--port"
) -> Problem | None:
    """The port the demo publishes is free (or already held by the demo itself)."""
    if ours or not port_in_use(host, port):
        return None
    return Problem(
        f"port {host}:{port} is already in use (needed for {owner})",
        f"stop whatever listens there (`ss -ltnp 'sport = :{port}'` shows it), "
        f"or choose another port with {flag}",
    )


def run_checks(results: Iterable[Problem | None]) -> list[Problem]:
    """Keep the problems, drop the passes."""
    return [problem for problem in results if problem is not None]
