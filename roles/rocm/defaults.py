"""Every knob of the rocm role, with its default. Override any of them in group_data.

Every source is configurable, so the same role installs from repo.radeon.com on a real host
and from the stand-in repository (``tests/fakegpu/aptrepo.py``) in the tests.
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # False: ROCm is managed elsewhere; roles/system.py then skips this role.
    "rocm_manage_driver": True,
    # ROCm release. In URLs "{version}" is it as written and "{version_path}" as AMD's paths
    # spell it (a trailing ".0" dropped: 7.1.0 -> 7.1).
    "rocm_version": "6.4.1",
    "rocm_repo_url": "https://repo.radeon.com/rocm/apt/{version_path}",
    "rocm_amdgpu_repo_url": "https://repo.radeon.com/amdgpu/{version_path}/ubuntu",
    # ASCII-armored key for both repositories (apt reads .asc keyrings: no gpg on the host).
    "rocm_repo_key_url": "https://repo.radeon.com/rocm/rocm.gpg.key",
    # The Ubuntu suite AMD builds for; Debian 12 hosts use jammy's packages.
    "rocm_repo_suite": "jammy",
    # apt pin so packages from AMD's repositories win over the distribution's ROCm.
    "rocm_pin_origin": "repo.radeon.com",
    "rocm_pin_priority": 600,
    # --- kernel driver -----------------------------------------------------------------
    # amdgpu-dkms builds the kernel module; off for hosts that run the distribution's amdgpu.
    "rocm_install_driver": True,
    "rocm_driver_packages": ["amdgpu-dkms"],
    # "{kernel}" is `uname -r`; a missing package stops the deploy naming kernel and package.
    "rocm_kernel_headers_package": "linux-headers-{kernel}",
    # --- user space ----------------------------------------------------------------------
    "rocm_packages": ["rocm-hip-runtime", "amd-smi-lib", "rocm-smi-lib"],
    # --- device access ---------------------------------------------------------------------
    # /dev/kfd and /dev/dri/renderD* belong to this group (udev rule below).
    "rocm_device_group": "render",
    "rocm_udev_rules": "/etc/udev/rules.d/70-modelfleet-amdgpu.rules",
    # Users added to the render and video groups when they exist. The backend roles add
    # their own service users (ollama_extra_groups, llama_swap_extra_groups).
    "rocm_service_users": [],
}
