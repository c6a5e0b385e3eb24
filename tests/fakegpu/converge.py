"""Converge one system role on existing containers: what the Molecule scenarios run.

    python -m tests.fakegpu.converge --role nvidia CONTAINER [CONTAINER ...]

For each container: install the stand-in GPU tools (a GPU without its driver, as on a fresh
host), serve the stand-in apt repositories on the podman bridge at a fixed port (so a second
converge sees the same sources: Molecule's idempotence step), write an inventory that puts
the containers in the role's group with the repositories' URLs, and run
``pyinfra -y --json INVENTORY tests/fleet/deploys/system_roles.py``. pyinfra's JSON goes to
stdout; the exit status is pyinfra's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from modelfleet.deploy.lab import localfleet
from tests.fakegpu.aptrepo import RECIPE, build_repos, serve

REPO = Path(__file__).resolve().parents[2]
SYSTEM_ROLES = "tests/fleet/deploys/system_roles.py"
ROLES: dict[str, dict[str, Any]] = {
    # Detection only: the GPU's driver tools are present, nothing is installed.
    "gpu": {
        "group": "gpu_nvidia",
        "gpu": "rtx4090x2",
        "port": 18760,
        "data": {},
        "driver": True,
        "deploy": "tests/fleet/deploys/gpu_detect.py",
    },
    "nvidia": {"group": "gpu_nvidia", "gpu": "rtx4090x2", "port": 18761, "data": {}},
    "rocm": {"group": "gpu_amd", "gpu": "mi300x", "port": 18762, "data": {}},
    "container_runtime": {
        "group": "gpu_nvidia",
        "gpu": "rtx4090x2",
        "port": 18763,
        "data": {"container_runtime_engine": "podman"},
    },
}


def repo_data(url: str) -> dict[str, str]:
    return {
        "nvidia_cuda_repo_url": f"{url}/cuda",
        "nvidia_cuda_repo_key_url": f"{url}/cuda/3bf863cc.pub",
        "nvidia_toolkit_repo_url": f"{url}/libnvidia-container/stable/deb/amd64",
        "nvidia_toolkit_repo_key_url": f"{url}/libnvidia-container/gpgkey",
        "rocm_repo_url": f"{url}/rocm/apt/{{version_path}}",
        "rocm_amdgpu_repo_url": f"{url}/amdgpu/{{version_path}}/ubuntu",
        "rocm_repo_key_url": f"{url}/rocm/rocm.gpg.key",
        "standin_distribution_repo_url": f"{url}/distribution",
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=sorted(ROLES), required=True)
    parser.add_argument("containers", nargs="+")
    args = parser.parse_args(argv)
    role = ROLES[args.role]

    profiles = localfleet.load_profiles()
    for container in args.containers:
        driver = role.get("driver", False)
        spec = localfleet.ContainerHost(container, gpu=role["gpu"], gpu_driver=driver)
        localfleet._install_fakegpu(spec, container, profiles)

    # Built once and kept: the same signing key and packages on every converge.
    root = localfleet.CACHE / f"standin-apt-r{RECIPE}"
    if not (root / "cuda" / "InRelease").exists():
        build_repos(root, kernel=os.uname().release)
    with serve(root, port=role["port"]) as url, tempfile.TemporaryDirectory() as tmp:
        data = {**repo_data(url), **role["data"]}
        hosts = [(f"@podman/{name}", data) for name in args.containers]
        inventory = Path(tmp) / "molecule_inventory.py"
        inventory.write_text(f"{role['group']} = {hosts!r}\n")
        pyinfra = str(Path(sys.executable).with_name("pyinfra"))
        done = subprocess.run(
            [pyinfra, "-y", "--json", str(inventory), role.get("deploy", SYSTEM_ROLES)],
            cwd=REPO,
            check=False,
        )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
