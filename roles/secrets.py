"""Secrets several hosts must share (the Redis password, the VRRP password), made once on
the controller and kept there.

A secret that only one host needs (the router's admin token) is made on that host and never
leaves it. A secret that several hosts must hold the same is made here instead, the way
Ansible's ``password`` lookup does: ``$MODELFLEET_SECRETS_DIR/<fleet>/<name>`` (default
``~/.config/modelfleet/secrets``), directory 0700, file 0600, created once and read on every
later deploy. The roles write it to the hosts with ``secret_file``, which never prints it.

Example::

    password = controller_secret("prod", "redis-password")   # same value on every later call
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path


def secrets_dir() -> Path:
    default = Path.home() / ".config" / "modelfleet" / "secrets"
    return Path(os.environ.get("MODELFLEET_SECRETS_DIR", default))


def controller_secret(fleet: str, name: str, length: int = 32) -> str:
    """The secret ``name`` of ``fleet``: read, or made once (URL-safe, ``length`` chars)."""
    for part in (fleet, name):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", part) or part.startswith("."):
            raise ValueError(f"secret store: {part!r} is not a plain file name")
    folder = secrets_dir() / fleet
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    value = secrets.token_urlsafe(length)[:length]
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    os.replace(path.with_suffix(".tmp"), path)
    return value
