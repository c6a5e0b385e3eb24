"""container_runtime: podman or docker, with GPU access for the containers it runs.

- podman: Debian's podman; NVIDIA GPUs through a CDI spec (``--device nvidia.com/gpu=all``).
- docker: Debian's docker.io and its service; NVIDIA GPUs through the ``nvidia`` runtime that
  ``nvidia-ctk runtime configure`` registers in daemon.json (docker restarts only then).
- AMD GPUs need nothing engine-wide: containers get ``--device /dev/kfd --device /dev/dri
  --group-add render --group-add video`` (the rocm role owns the devices' group).

Runs after the driver roles (``nvidia.driver`` installs the Container Toolkit).

Example (``deploy.py``)::

    from modelfleet.roles import container_runtime
    container_runtime.engine()
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.facts.files import File
from pyinfra.facts.server import Which
from pyinfra.operations import apt, files, server, systemd

from modelfleet.roles import nvidia
from modelfleet.roles.container_runtime.defaults import DEFAULTS

ENGINES = ("podman", "docker")
DOCKERD = "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"
DOCKER_DROP_IN = "/etc/systemd/system/docker.service.d/modelfleet.conf"


def gpu_vendor() -> str | None:
    """Which GPUs the engine must expose: from ``container_runtime_gpu`` or the host."""
    wanted = str(host.data.container_runtime_gpu)
    if wanted in ("nvidia", "amd"):
        return wanted
    if wanted == "none":
        return None
    if wanted != "auto":
        raise DeployError(
            f"{host.name}: container_runtime_gpu is {wanted!r}; use auto, nvidia, amd or none"
        )
    if "gpu_nvidia" in host.groups or host.get_fact(Which, command="nvidia-ctk"):
        return "nvidia"
    if "gpu_amd" in host.groups or host.get_fact(File, path="/dev/kfd") is not None:
        return "amd"
    return None


@deploy("Container runtime", data_defaults=DEFAULTS)
def engine() -> None:
    """Install the engine named by ``container_runtime_engine`` and give it the host's GPUs."""
    data = host.data
    name = data.container_runtime_engine
    if name not in ENGINES:
        raise DeployError(
            f"{host.name}: container_runtime_engine is {name!r}; use one of {', '.join(ENGINES)}"
        )
    packages = dict(data.container_runtime_packages).get(name)
    if not packages:
        raise DeployError(f"{host.name}: container_runtime_packages has no entry for {name!r}")
    # The drop-in goes first, so docker's first start (by its package) already uses it.
    drop_in = _docker_drop_in() if name == "docker" else None
    apt.packages(name=f"{name} packages", packages=list(packages), no_recommends=True)

    if drop_in is not None:  # docker
        if data.container_runtime_manage_service:
            systemd.daemon_reload(name="Reload systemd for dockerd's flags", _if=drop_in.did_change)
            systemd.service(
                name="docker service", service="docker.service", running=True, enabled=True
            )
            systemd.service(
                name="Restart docker for its new flags",
                service="docker.service",
                restarted=True,
                _if=drop_in.did_change,
            )
        for user in data.container_runtime_users:
            server.user(name=f"{user} in docker group", user=user, groups=["docker"], append=True)

    if gpu_vendor() == "nvidia":
        if "gpu_nvidia" not in host.groups:  # the driver role did not install the toolkit
            nvidia.toolkit()
        nvidia.container_access(engine=name)


def _docker_drop_in():
    args = [str(arg) for arg in host.data.container_runtime_docker_extra_args]
    if not args:
        return files.file(name="No dockerd flags drop-in", path=DOCKER_DROP_IN, present=False)
    return files.template(
        name="dockerd flags (systemd drop-in)",
        src="templates/container_runtime/docker-override.conf.j2",
        dest=DOCKER_DROP_IN,
        mode="0644",
        command=" ".join([DOCKERD, *args]),
    )


__all__ = ["DEFAULTS", "engine", "gpu_vendor"]
