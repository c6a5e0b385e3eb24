"""roles/gpu alone: run the detection facts and stop a GPU host that shows no GPU.

What the gpu role's Molecule scenario converges; it changes nothing on a host, so the
idempotence step is trivially met and the verify step checks what was detected.

pyinfra -y --json INVENTORY tests/fleet/deploys/gpu_detect.py
"""

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from modelfleet.roles.gpu.facts import HostGpus

hardware = host.get_fact(HostGpus)
if {"gpu_nvidia", "gpu_amd"} & set(host.groups) and not hardware.gpus:
    raise DeployError(f"host {host.name}: in a GPU group, but detection found no GPU")
