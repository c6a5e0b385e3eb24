"""rocm: pinned amdgpu/ROCm repositories, the driver, device access for /dev/kfd and render nodes.

Order: ROCm and amdgpu repositories (signed-by keyring, apt pin) -> headers for the running
kernel -> amdgpu-dkms -> ROCm user space -> udev rules for /dev/kfd and /dev/dri/renderD* ->
render and video groups (and the listed service users in them).

Example (``deploy.py``)::

    from modelfleet.roles import rocm
    if "gpu_amd" in host.groups:
        rocm.driver()
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import KernelVersion, Users, Which
from pyinfra.operations import apt, files, server

from modelfleet.roles.aptsource import kernel_headers, signed_repo
from modelfleet.roles.rocm.defaults import DEFAULTS

GROUPS = ("render", "video")


def version_path(version: str) -> str:
    """ROCm versions as AMD's repository paths spell them: ``7.1.0`` -> ``7.1``."""
    return version[:-2] if version.count(".") == 2 and version.endswith(".0") else version


def repo_url(template: str) -> str:
    version = str(host.data.rocm_version)
    return template.format(version=version, version_path=version_path(version))


@deploy("ROCm", data_defaults=DEFAULTS)
def driver() -> None:
    """Install the pinned ROCm release and give the GPU devices to the render group."""
    data = host.data
    files.template(
        name="Prefer AMD's ROCm packages (apt pin)",
        src="templates/rocm/rocm-pin.pref.j2",
        dest="/etc/apt/preferences.d/rocm-pin-600",
        mode="0644",
        origin=data.rocm_pin_origin,
        priority=data.rocm_pin_priority,
    )
    for name, template in (
        ("rocm", data.rocm_repo_url),
        ("amdgpu", data.rocm_amdgpu_repo_url),
    ):
        signed_repo(
            name,
            url=repo_url(template),
            key_url=data.rocm_repo_key_url,
            suite=data.rocm_repo_suite,
            components="main",
        )

    if data.rocm_install_driver:
        kernel = host.get_fact(KernelVersion)
        kernel_headers(
            name=f"Headers for kernel {kernel}",
            package=data.rocm_kernel_headers_package.format(kernel=kernel),
            kernel=kernel,
        )
        apt.packages(
            name="amdgpu kernel driver (DKMS)",
            packages=list(data.rocm_driver_packages),
            no_recommends=True,
        )
    apt.packages(
        name=f"ROCm {data.rocm_version}", packages=list(data.rocm_packages), no_recommends=True
    )

    for group in GROUPS:
        server.group(name=f"Group {group}", group=group, system=True)
    rules = files.template(
        name="udev rules for /dev/kfd and render nodes",
        src="templates/rocm/amdgpu.rules.j2",
        dest=data.rocm_udev_rules,
        mode="0644",
        device_group=data.rocm_device_group,
    )
    # Containers and minimal hosts have no udev; the rules apply when one starts.
    if host.get_fact(Which, command="udevadm"):
        server.shell(
            name="Reload udev rules",
            commands=["udevadm control --reload-rules", "udevadm trigger --subsystem-match=drm"],
            _if=rules.did_change,
        )
    existing = host.get_fact(Users)
    for user in data.rocm_service_users:
        if user in existing:
            server.user(
                name=f"{user} in render and video",
                user=user,
                groups=list(GROUPS),
                append=True,
                ensure_home=False,  # only the groups are ours to manage
            )


__all__ = ["DEFAULTS", "driver", "version_path"]
