"""nvidia: the NVIDIA driver pinned to a branch, persistence mode, and the Container Toolkit.

Order: Secure Boot check (a clear stop before anything changes) -> CUDA repository -> headers
for the running kernel -> driver packages -> nouveau blacklisted -> persistence daemon ->
reboot when the driver changed (only with ``nvidia_allow_reboot``, never on ``@local``) ->
Container Toolkit. GPU access for a container engine (CDI spec for podman, the docker runtime)
is :func:`container_access`, which the container_runtime role calls once the engine exists.

Example (``deploy.py``)::

    from modelfleet.roles import nvidia
    if "gpu_nvidia" in host.groups:
        nvidia.driver()
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.connectors.local import LocalConnector
from pyinfra.facts.server import KernelVersion, Which
from pyinfra.operations import apt, files, server, systemd

from modelfleet.roles.aptsource import kernel_headers, pinned, signed_repo
from modelfleet.roles.nvidia.defaults import DEFAULTS
from modelfleet.roles.nvidia.facts import SecureBootState
from modelfleet.roles.nvidia.operations import cdi_spec, docker_runtime

NOUVEAU_CONF = "/etc/modprobe.d/blacklist-nouveau.conf"


def _format(names: list[str], kernel: str) -> list[str]:
    branch = str(host.data.nvidia_driver_branch)
    return [name.format(branch=branch, kernel=kernel) for name in names]


def _check_secure_boot(kernel: str) -> list[str]:
    """Signed module packages to install, or a DeployError when Secure Boot would block DKMS."""
    if host.get_fact(SecureBootState) != "enabled":
        return []
    signed = _format(list(host.data.nvidia_signed_modules_packages), kernel)
    if not signed:
        raise DeployError(
            f"{host.name}: Secure Boot is enabled, so a DKMS-built NVIDIA module would not "
            "load. Either enroll a MOK and sign the module (needs someone at the console), "
            "disable Secure Boot, or set nvidia_signed_modules_packages to the distribution's "
            "signed modules (e.g. linux-modules-nvidia-{branch}-server-{kernel} on Ubuntu)."
        )
    return signed


@deploy("NVIDIA driver", data_defaults=DEFAULTS)
def driver() -> None:
    """Install the pinned driver branch, blacklist nouveau, turn persistence mode on."""
    data = host.data
    kernel = host.get_fact(KernelVersion)
    signed_modules = _check_secure_boot(kernel)
    if data.nvidia_driver_source == "cuda":
        signed_repo(
            "nvidia-cuda", url=data.nvidia_cuda_repo_url, key_url=data.nvidia_cuda_repo_key_url
        )
    elif data.nvidia_driver_source != "distribution":
        raise DeployError(
            f"{host.name}: nvidia_driver_source is {data.nvidia_driver_source!r}; "
            "use 'cuda' or 'distribution'"
        )
    if not signed_modules:
        headers = data.nvidia_kernel_headers_package.format(kernel=kernel)
        kernel_headers(name=f"Headers for kernel {kernel}", package=headers, kernel=kernel)
    packages = pinned(
        _format(list(data.nvidia_driver_packages), kernel), data.nvidia_driver_version
    )
    installed = apt.packages(
        name=f"NVIDIA driver {data.nvidia_driver_branch}",
        packages=packages + signed_modules,
        no_recommends=True,
    )

    if data.nvidia_blacklist_nouveau:
        blacklist = files.template(
            name="Blacklist nouveau",
            src="templates/nvidia/blacklist-nouveau.conf.j2",
            dest=NOUVEAU_CONF,
            mode="0644",
        )
        if host.get_fact(Which, command="update-initramfs"):
            server.shell(
                name="Rebuild the initramfs without nouveau",
                commands=["update-initramfs -u"],
                _if=blacklist.did_change,
            )

    if data.nvidia_persistence_mode:
        systemd.service(
            name="nvidia-persistenced (persistence mode on)",
            service="nvidia-persistenced.service",
            running=True,
            enabled=True,
        )

    _reboot_if_needed(installed)
    if data.nvidia_container_toolkit:
        toolkit()


def may_reboot(allow_reboot: bool, connector_cls: type) -> bool:
    """A reboot only when asked for, and never of the controller itself (``@local``)."""
    return bool(allow_reboot) and not issubclass(connector_cls, LocalConnector)


def _reboot_if_needed(installed) -> None:
    if may_reboot(host.data.nvidia_allow_reboot, host.connector_cls):
        server.reboot(
            name="Reboot into the new NVIDIA driver",
            reboot_timeout=int(host.data.nvidia_reboot_timeout_s),
            _if=installed.did_change,
        )
        return
    # Debian's convention: tell the operator (and unattended-upgrades) a reboot is due.
    files.file(
        name="Mark that the new driver needs a reboot",
        path="/var/run/reboot-required",
        touch=True,
        _if=installed.did_change,
    )


@deploy("NVIDIA Container Toolkit", data_defaults=DEFAULTS)
def toolkit() -> None:
    """Add the toolkit repository and install ``nvidia-container-toolkit`` (``nvidia-ctk``)."""
    data = host.data
    signed_repo(
        "nvidia-container-toolkit",
        url=data.nvidia_toolkit_repo_url,
        key_url=data.nvidia_toolkit_repo_key_url,
    )
    apt.packages(
        name="NVIDIA Container Toolkit",
        packages=pinned(list(data.nvidia_toolkit_packages), data.nvidia_toolkit_version),
        no_recommends=True,
    )


@deploy("NVIDIA GPU access for containers", data_defaults=DEFAULTS)
def container_access(engine: str) -> None:
    """CDI spec for podman, or the nvidia runtime in daemon.json (+ restart) for docker."""
    if engine == "podman":
        cdi_spec(name="CDI spec for podman", output=host.data.nvidia_cdi_spec)
    elif engine == "docker":
        runtime = docker_runtime(
            name="nvidia runtime for docker", daemon_json=host.data.nvidia_docker_daemon_json
        )
        systemd.service(
            name="Restart docker for the nvidia runtime",
            service="docker.service",
            restarted=True,
            _if=runtime.did_change,
        )
    else:
        raise DeployError(f"{host.name}: container engine {engine!r}: use 'podman' or 'docker'")


__all__ = ["DEFAULTS", "container_access", "driver", "may_reboot", "toolkit"]
