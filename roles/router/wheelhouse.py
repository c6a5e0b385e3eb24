"""Controller side of the router rollout: the release id and the wheelhouse tarball.

A release is the project's wheel plus every dependency wheel, built once on the controller with
``pip wheel`` and packed into one tarball so a router host needs no index and no compiler. The
release id is a hash of the sources that go into the wheel: the same checkout gives the same id,
so a re-run finds the release already installed and uploads nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from functools import cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What setuptools packs into the wheel (see [tool.setuptools] in pyproject.toml).
PACKAGE_DIRS = ("deploy", "router", "roles")
SOURCE_SUFFIXES = (".py", ".j2", ".html", ".js", ".css", ".svg", ".json", ".typed")


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


@cache
def build_wheelhouse(root: Path = PROJECT_ROOT) -> Path:
    """Build (or reuse) ``<cache>/wheelhouse/<release id>.tar`` and return its path.

    Example::

        tarball = build_wheelhouse()   # ~/.cache/modelfleet/wheelhouse/0.1.0-3f2a9c1b7d04.tar
    """
    rid = release_id(root)
    out_dir = cache_dir() / "wheelhouse"
    tarball = out_dir / f"{rid}.tar"
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
        command = [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(src)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise WheelhouseError(
                f"`pip wheel` for the router release {rid} failed:\n{done.stderr[-2000:]}"
            )
        partial = tarball.with_suffix(".tar.partial")
        with tarfile.open(partial, "w") as tar:
            for wheel in sorted(wheels.glob("*.whl")):
                tar.add(wheel, arcname=wheel.name)
        partial.rename(tarball)
    return tarball
