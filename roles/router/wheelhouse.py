"""Controller side of the router rollout: the release id and the wheelhouse tarball.

A release is a router-only environment: the project's wheel (installed without its
dependencies) plus wheels of the router's own run-time dependencies (``ROUTER_DEPENDENCIES``,
pinned as the released pyproject.toml pins them), with ``requirements.txt`` naming them. No pyinfra,
paramiko, gevent or pynvml reaches a router host. It is built once per release id on the
controller with ``pip wheel``, when the deploy first uploads it (never under ``--dry``), and
packed into one tarball so a router host needs no index and no compiler. The release id is a
hash of the sources that go into the wheel: the same checkout gives the same id, so a re-run
finds the release already installed and uploads nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
from functools import cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What setuptools packs into the wheel (see [tool.setuptools] in pyproject.toml).
PACKAGE_DIRS = ("modelfleet", "deploy", "router", "roles", "templates")
SOURCE_SUFFIXES = (".py", ".j2", ".html", ".js", ".css", ".svg", ".json", ".typed")
# What ``modelfleet-router`` imports (router/): the only dependencies a router host gets.
ROUTER_DEPENDENCIES = (
    "aiohttp",
    "pydantic",
    "pyyaml",
    "prometheus-client",
    "click",
    "orjson",
    "redis",
)
# Wheels a host may need although the controller's Python does not: redis-py wants
# async-timeout below Python 3.11.3, and Debian bookworm ships 3.11.2. pip on the host picks
# them from the wheelhouse through the requirement's marker.
HOST_ONLY_WHEELS = ("async-timeout>=4.0.3",)
# One build at a time (pyinfra runs hosts in greenlets; this lock is gevent's when patched).
_BUILD_LOCK = threading.Lock()


class WheelhouseError(Exception):
    """The wheelhouse could not be built; the message says which command failed and why."""


def cache_dir() -> Path:
    return Path(os.environ.get("MODELFLEET_CACHE", Path.home() / ".cache" / "modelfleet"))


def project_version(root: Path = PROJECT_ROOT) -> str:
    with (root / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _source_files(root: Path) -> list[Path]:
    files = [root / "pyproject.toml"]
    for package in PACKAGE_DIRS:
        for path in sorted((root / package).rglob("*")):
            wanted = path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts
            if path.is_file() and wanted:
                files.append(path)
    return files


@cache
def release_id(root: Path = PROJECT_ROOT) -> str:
    """``<version>-<12 hex of the sources>``, e.g. ``0.1.0-3f2a9c1b7d04``."""
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{project_version(root)}-{digest.hexdigest()[:12]}"


def router_requirements(root: Path = PROJECT_ROOT) -> list[str]:
    """The router's run-time requirements, as the released sources' pyproject.toml pins them
    (not the installed metadata: that may be older than the checkout being released)."""
    wanted = {_normal(name) for name in ROUTER_DEPENDENCIES}
    found = []
    with (root / "pyproject.toml").open("rb") as f:
        requires = tomllib.load(f)["project"]["dependencies"]
    for line in requires:
        name = re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0]
        if ";" not in line and _normal(name) in wanted:  # extras carry a marker: not these
            found.append(line.strip())
    return sorted(found)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheelhouse_path(root: Path = PROJECT_ROOT) -> Path:
    """Where the release's tarball is (or will be): ``<cache>/wheelhouse/<release id>.tar``."""
    return cache_dir() / "wheelhouse" / f"{release_id(root)}.tar"


def build_wheelhouse(root: Path = PROJECT_ROOT) -> Path:
    """Build (once per release id) ``wheelhouse_path(root)`` and return its path.

    Example::

        tarball = build_wheelhouse()   # ~/.cache/modelfleet/wheelhouse/0.1.0-3f2a9c1b7d04.tar
    """
    with _BUILD_LOCK:
        return _build(root)


def _build(root: Path) -> Path:
    rid = release_id(root)
    tarball = wheelhouse_path(root)
    out_dir = tarball.parent
    if tarball.is_file():
        return tarball
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        wheels = Path(tmp) / "wheels"
        # Copy the sources first: pip builds in place otherwise and leaves build/ in the checkout.
        src = Path(tmp) / "src"
        shutil.copytree(
            root,
            src,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".fleet", "tests"
            ),
        )
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels)]
        requirements = router_requirements(root)
        for command in (
            [*pip_wheel, "--no-deps", str(src)],
            [*pip_wheel, *requirements],
            [*pip_wheel, "--no-deps", *HOST_ONLY_WHEELS],
        ):
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise WheelhouseError(
                    f"`pip wheel` for the router release {rid} failed:\n{done.stderr[-2000:]}"
                )
        (wheels / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
        partial = tarball.with_suffix(".tar.partial")
        with tarfile.open(partial, "w") as tar:
            for wheel in sorted(wheels.glob("*.whl")):
                tar.add(wheel, arcname=wheel.name)
            tar.add(wheels / "requirements.txt", arcname="requirements.txt")
        partial.rename(tarball)
    return tarball
