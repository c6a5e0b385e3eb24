"""Operations of the nvidia role: GPU access for container engines through the Container Toolkit."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.facts.files import File

from modelfleet.roles.nvidia.facts import CdiDevices, DockerNvidiaRuntime, NvidiaGpuIds


def expected_cdi_devices(gpu_ids: list[tuple[str, str]]) -> set[str]:
    """The CDI names a spec for these GPUs holds: by index, by UUID, and ``all``."""
    names = {"nvidia.com/gpu=all"}
    for index, uuid in gpu_ids:
        names |= {f"nvidia.com/gpu={index}", f"nvidia.com/gpu={uuid}"}
    return names


@operation()
def cdi_spec(output: str = "/etc/cdi/nvidia.yaml"):
    """
    Generate the CDI spec podman uses for ``--device nvidia.com/gpu=...``, when it is stale.

    + output: where the spec goes

    The spec is regenerated only when it is missing or does not list exactly the GPUs the
    driver sees (a GPU added, swapped or a new driver installed).

    **Example:**

    .. code:: python

        cdi_spec(name="CDI spec for podman", output="/etc/cdi/nvidia.yaml")
    """
    wanted = expected_cdi_devices(host.get_fact(NvidiaGpuIds))
    devices: list[str] = host.get_fact(CdiDevices)
    have = set(devices)
    if host.get_fact(File, path=output) and len(wanted) > 1 and have == wanted:
        host.noop(f"{output} lists the {len(wanted) - 1} GPU names and all")
        return
    yield StringCommand("nvidia-ctk", "cdi", "generate", QuoteString(f"--output={output}"))


@operation()
def docker_runtime(daemon_json: str = "/etc/docker/daemon.json"):
    """
    Register the ``nvidia`` runtime in docker's daemon.json with ``nvidia-ctk``.

    + daemon_json: docker's daemon configuration

    **Example:**

    .. code:: python

        runtime = docker_runtime(name="nvidia runtime for docker")
        systemd.service(service="docker", restarted=True, _if=runtime.did_change)
    """
    if host.get_fact(DockerNvidiaRuntime, path=daemon_json):
        host.noop(f"{daemon_json} already has the nvidia runtime")
        return
    yield StringCommand(
        "nvidia-ctk",
        "runtime",
        "configure",
        "--runtime=docker",
        QuoteString(f"--config={daemon_json}"),
    )
