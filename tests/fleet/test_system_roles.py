"""The system roles (nvidia, rocm, container_runtime) on container hosts, from stand-in repos.

Hosts emulate GPUs whose driver is not installed yet (lspci lists them, no nvidia-smi); the
roles install the stand-in packages from ``tests/fakegpu/aptrepo.py`` served on the podman
bridge, exactly as they would install NVIDIA's and AMD's from their repositories.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.deploy.lab import localfleet
from modelfleet.deploy.lab.localfleet import ContainerHost
from tests.fakegpu.aptrepo import StandinRepos, build_repos, serve

DEPLOY = "tests/fleet/deploys/system_roles.py"
KERNEL = os.uname().release  # containers share the machine's kernel


@pytest.fixture(scope="module")
def repos(tmp_path_factory, fleet_available) -> Iterator[dict[str, Any]]:
    """Stand-in repositories, with and without the kernel headers, served on the bridge."""
    root = tmp_path_factory.mktemp("apt")
    full = build_repos(root / "full", kernel=KERNEL)
    bare = build_repos(root / "noheaders", kernel=KERNEL, with_headers=False)
    # The bridge address exists only while a container runs: keep one up while serving.
    holder = localfleet.up([ContainerHost("repo-holder")], fleet="mftrepo" + os.urandom(2).hex())
    try:
        with serve(root) as url:
            yield {"url": url, "full": full, "noheaders": bare}
    finally:
        localfleet.down(holder[0].fleet)


def role_data(url: str, repos: StandinRepos, name: str) -> dict[str, Any]:
    base = f"{url}/{name}"
    return {
        "nvidia_cuda_repo_url": f"{base}/{repos.cuda}",
        "nvidia_cuda_repo_key_url": f"{base}/{repos.cuda}/3bf863cc.pub",
        "nvidia_toolkit_repo_url": f"{base}/{repos.toolkit}",
        "nvidia_toolkit_repo_key_url": f"{base}/libnvidia-container/gpgkey",
        "rocm_repo_url": f"{base}/rocm/apt/{{version_path}}",
        "rocm_amdgpu_repo_url": f"{base}/amdgpu/{{version_path}}/ubuntu",
        "rocm_repo_key_url": f"{base}/rocm/rocm.gpg.key",
        "standin_distribution_repo_url": f"{base}/{repos.distribution}",
    }


def write_inventory(path: Path, groups: dict[str, list[tuple[localfleet.RunningHost, dict]]]):
    lines = [
        f"{group} = {[(h.name, {**localfleet.ssh_host_data(h), **data}) for h, data in hosts]!r}"
        for group, hosts in groups.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def sh(host: localfleet.RunningHost, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "exec", host.container, "sh", "-c", command],
        capture_output=True,
        text=True,
        check=False,
    )


def changed_ops(result: dict[str, Any]) -> list[str]:
    return [op["name"] for op in result["results"]["operations"] if op["success"]]


def test_roles_converge_then_change_nothing(fleet_factory, repos, run_pyinfra, tmp_path):
    fleet = fleet_factory(
        [
            ContainerHost("nv", gpu="rtx4090x2", gpu_driver=False),
            ContainerHost("amd", gpu="mi300x", gpu_driver=False),
        ]
    )
    nv, amd = fleet.by_name["nv"], fleet.by_name["amd"]
    assert sh(nv, "command -v nvidia-smi").returncode != 0  # no driver yet
    data = role_data(repos["url"], repos["full"], "full")
    inventory = write_inventory(
        tmp_path / "inventory.py",
        {
            "gpu_nvidia": [
                (
                    nv,
                    {
                        **data,
                        # Exact versions pinned (apt "pkg=version"), as a production fleet would.
                        "nvidia_driver_version": "550.54.15-1",
                        "nvidia_toolkit_version": "1.17.8-1",
                        "container_runtime_engine": "podman",
                    },
                )
            ],
            "gpu_amd": [(amd, {**data, "rocm_service_users": ["nobody"]})],
        },
    )

    first = run_pyinfra(inventory, DEPLOY)
    assert first["results"]["totals"]["error"] == 0
    assert first["results"]["totals"]["success"] > 0
    changed = changed_ops(first)
    assert "NVIDIA driver | NVIDIA driver 550" in changed
    assert "ROCm | ROCm 6.4.1" in changed

    # NVIDIA: the branch's driver answers, persistence is on, nouveau is out, CDI lists GPUs.
    query = "nvidia-smi --query-gpu=index,driver_version,persistence_mode --format=csv,noheader"
    assert sh(nv, query).stdout.splitlines() == [
        "0, 550.54.15, Enabled",
        "1, 550.54.15, Enabled",
    ]
    assert sh(nv, "readlink -f $(command -v nvidia-smi)").stdout.strip() == "/usr/bin/nvidia-smi"
    assert sh(nv, "systemctl is-enabled nvidia-persistenced").stdout.strip() == "enabled"
    assert "blacklist nouveau" in sh(nv, "cat /etc/modprobe.d/blacklist-nouveau.conf").stdout
    assert sh(nv, f"dpkg -s linux-headers-{KERNEL}").returncode == 0
    versions = sh(nv, "dpkg-query -W cuda-drivers-550 nvidia-container-toolkit").stdout
    assert versions.split() == [
        "cuda-drivers-550",
        "550.54.15-1",
        "nvidia-container-toolkit",
        "1.17.8-1",
    ]
    assert sh(nv, "test -e /var/run/reboot-required").returncode == 0  # no reboot allowed
    cdi = sh(nv, "nvidia-ctk cdi list").stdout.splitlines()[1:]
    assert sorted(cdi) == sorted(
        ["nvidia.com/gpu=0", "nvidia.com/gpu=1", "nvidia.com/gpu=all"]
        + [f"nvidia.com/gpu=GPU-5a1c0e5d-7b2e-4c1a-9f7e-2d6a0c4b1e0{i}" for i in (1, 2)]
    )
    assert sh(nv, "podman --version").returncode == 0
    sources = sh(nv, "cat /etc/apt/sources.list.d/nvidia-cuda.list").stdout
    assert sources.startswith("deb [signed-by=/etc/apt/keyrings/nvidia-cuda.asc] http://10.88.0.1")

    # AMD: ROCm's tools answer, the devices' group rule is in place, groups exist.
    assert "AMD Instinct MI300X" in sh(amd, "amd-smi static --json").stdout
    assert sh(amd, "dpkg -s amdgpu-dkms").returncode == 0
    rules = sh(amd, "cat /etc/udev/rules.d/70-modelfleet-amdgpu.rules").stdout
    assert 'KERNEL=="kfd", GROUP="render", MODE="0660"' in rules
    assert set(sh(amd, "id -nG nobody").stdout.split()) >= {"render", "video"}
    assert "Pin-Priority: 600" in sh(amd, "cat /etc/apt/preferences.d/rocm-pin-600").stdout

    second = run_pyinfra(inventory, DEPLOY)
    assert second["results"]["totals"]["error"] == 0
    assert second["results"]["totals"]["success"] == 0, changed_ops(second)


def test_missing_headers_stop_naming_kernel_and_package(
    fleet_factory, repos, run_pyinfra, tmp_path
):
    fleet = fleet_factory([ContainerHost("nv", gpu="rtx4090x2", gpu_driver=False)])
    nv = fleet.by_name["nv"]
    data = role_data(repos["url"], repos["noheaders"], "noheaders")
    inventory = write_inventory(tmp_path / "inventory.py", {"gpu_nvidia": [(nv, data)]})

    result = run_pyinfra(inventory, DEPLOY, check=False)
    assert result["returncode"] != 0
    assert (
        f"kernel headers for the running kernel {KERNEL} are not available: no apt source "
        f"has package linux-headers-{KERNEL}"
    ) in result["stderr"]
    assert sh(nv, "dpkg -s cuda-drivers-550").returncode != 0  # stopped before the driver


def test_secure_boot_stops_before_touching_the_host_unless_modules_are_signed(
    fleet_factory, repos, run_pyinfra, tmp_path
):
    fleet = fleet_factory(
        [ContainerHost("sb", gpu="rtx4090x2", gpu_driver=False, secure_boot=True)]
    )
    host = fleet.by_name["sb"]
    data = {
        **role_data(repos["url"], repos["noheaders"], "noheaders"),
        "nvidia_container_toolkit": False,
    }
    inventory = write_inventory(tmp_path / "inventory.py", {"gpu_nvidia": [(host, data)]})

    stopped = run_pyinfra(inventory, DEPLOY, check=False)
    assert stopped["returncode"] != 0
    assert (
        "sb: Secure Boot is enabled, so a DKMS-built NVIDIA module would not load"
        in (stopped["stderr"])
    )
    assert sh(host, "ls /etc/apt/sources.list.d/").stdout.strip() == ""  # nothing touched

    # Ubuntu's way: the driver from the distribution with its precompiled, signed modules.
    # Nothing to build, so no headers are needed and no CUDA repository is added.
    signed = {
        **data,
        "nvidia_driver_source": "distribution",
        "nvidia_driver_packages": [
            "nvidia-utils-{branch}-server",
            "nvidia-compute-utils-{branch}-server",
        ],
        "nvidia_signed_modules_packages": ["linux-modules-nvidia-{branch}-server-{kernel}"],
    }
    inventory = write_inventory(tmp_path / "inventory.py", {"gpu_nvidia": [(host, signed)]})
    result = run_pyinfra(inventory, DEPLOY)
    assert result["results"]["totals"]["error"] == 0
    assert sh(host, f"dpkg -s linux-modules-nvidia-550-server-{KERNEL}").returncode == 0
    assert sh(host, f"dpkg -s linux-headers-{KERNEL}").returncode != 0
    assert sh(host, "ls /etc/apt/sources.list.d/").stdout.split() == ["standin-distribution.list"]
    query = "nvidia-smi --query-gpu=persistence_mode --format=csv,noheader"
    assert sh(host, query).stdout.split() == ["Enabled", "Enabled"]
    again = run_pyinfra(inventory, DEPLOY)
    assert again["results"]["totals"]["success"] == 0, changed_ops(again)


def test_docker_gets_the_nvidia_runtime_once(fleet_factory, repos, run_pyinfra, tmp_path):
    fleet = fleet_factory([ContainerHost("dk", gpu="rtx4090x2", gpu_driver=False)])
    host = fleet.by_name["dk"]
    data = {
        **role_data(repos["url"], repos["full"], "full"),
        "container_runtime_engine": "docker",
        # dockerd inside a podman container: no overlay mounts, no iptables.
        "container_runtime_docker_extra_args": [
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ],
    }
    inventory = write_inventory(tmp_path / "inventory.py", {"gpu_nvidia": [(host, data)]})

    first = run_pyinfra(inventory, DEPLOY)
    assert first["results"]["totals"]["error"] == 0
    assert "Container runtime | NVIDIA GPU access for containers | nvidia runtime for docker" in (
        changed_ops(first)
    )
    runtimes = sh(host, "docker info --format '{{json .Runtimes}}'").stdout
    assert '"nvidia"' in runtimes
    assert sh(host, "systemctl is-active docker").stdout.strip() == "active"

    second = run_pyinfra(inventory, DEPLOY)
    assert second["results"]["totals"]["success"] == 0, changed_ops(second)
