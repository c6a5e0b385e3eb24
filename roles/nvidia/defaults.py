"""Every knob of the nvidia role, with its default. Override any of them in group_data.

Every source is configurable (repository URL, key, package names, versions), so the same
role installs from NVIDIA's repositories on a real host and from the stand-in repository
(``tests/fakegpu/aptrepo.py``) in the tests.
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # --- driver -------------------------------------------------------------------------
    # False: the driver is managed elsewhere; roles/system.py then skips this role.
    "nvidia_manage_driver": True,
    # Driver branch; "{branch}" in the package names below is replaced by it.
    "nvidia_driver_branch": "550",
    # "cuda": NVIDIA's CUDA apt repository (below); "distribution": packages from the apt
    # sources the host already has (e.g. Debian non-free, Ubuntu's nvidia-*-server).
    "nvidia_driver_source": "cuda",
    # Packages that install the driver. Ubuntu's server flavour, for example:
    # ["nvidia-headless-{branch}-server", "nvidia-utils-{branch}-server"].
    "nvidia_driver_packages": ["cuda-drivers-{branch}"],
    # Exact apt version for the driver packages ("550.54.15-1"); "" takes the newest of the branch.
    "nvidia_driver_version": "",
    # The CUDA repository (a flat apt repository: "deb [signed-by=KEY] URL /").
    "nvidia_cuda_repo_url": "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64",
    # Its ASCII-armored signing key (apt reads .asc keyrings directly: no gpg needed on the host).
    "nvidia_cuda_repo_key_url": (
        "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/3bf863cc.pub"
    ),
    # Headers for the running kernel (DKMS builds the module against them); "{kernel}" is
    # `uname -r`. A missing package stops the deploy with the kernel and package named.
    "nvidia_kernel_headers_package": "linux-headers-{kernel}",
    # --- Secure Boot --------------------------------------------------------------------
    # With Secure Boot on, DKMS-built modules do not load unless signed with an enrolled MOK.
    # Packages of modules the distribution signed, e.g. Ubuntu's
    # ["linux-modules-nvidia-{branch}-server-{kernel}"]; empty: Secure Boot on = clear stop.
    "nvidia_signed_modules_packages": [],
    # --- nouveau, persistence, reboot ----------------------------------------------------
    "nvidia_blacklist_nouveau": True,
    # nvidia-persistenced keeps the driver loaded between jobs (no 1-2 s init per process).
    "nvidia_persistence_mode": True,
    # Reboot when the driver packages changed. Never on @local (the controller itself);
    # without it a changed driver leaves /var/run/reboot-required behind.
    "nvidia_allow_reboot": False,
    "nvidia_reboot_timeout_s": 600,
    # --- Container Toolkit ---------------------------------------------------------------
    "nvidia_container_toolkit": True,
    "nvidia_toolkit_repo_url": "https://nvidia.github.io/libnvidia-container/stable/deb/amd64",
    "nvidia_toolkit_repo_key_url": "https://nvidia.github.io/libnvidia-container/gpgkey",
    "nvidia_toolkit_packages": ["nvidia-container-toolkit"],
    # Exact apt version of the toolkit packages; "" takes the newest.
    "nvidia_toolkit_version": "",
    # Where the CDI spec for podman goes (container_runtime role, engine podman).
    "nvidia_cdi_spec": "/etc/cdi/nvidia.yaml",
    # docker's daemon.json, edited by `nvidia-ctk runtime configure` (engine docker).
    "nvidia_docker_daemon_json": "/etc/docker/daemon.json",
}
