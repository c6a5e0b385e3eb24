"""Phase 2 of a deploy: GPU drivers, then the container runtime, where a host wants them.

- ``nvidia.driver()`` on hosts in ``gpu_nvidia``, unless ``nvidia_manage_driver`` is false;
- ``rocm.driver()`` on hosts in ``gpu_amd``, unless ``rocm_manage_driver`` is false;
- ``container_runtime.engine()`` on hosts with ``container_runtime_engine`` set, or that run a
  backend in a container (``needs_container_engine``; the engine then defaults to podman).

Set ``*_manage_driver: False`` for hosts whose driver is managed elsewhere (or emulated, as
in ``inventory/local.py``).

Example (``deploy/apply/phases.py``)::

    from modelfleet.roles import system
    system.drivers_and_runtime(needs_container_engine=any(
        inst.install == "container" for inst in host_plan.instances))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyinfra import host
from pyinfra.api import DeployError

from modelfleet.roles import container_runtime, knobs, nvidia, rocm

# The system roles' knobs (a standalone run of these roles checks only its own keys; a fleet
# deploy checks every role's keys with the plan).
SYSTEM_ROLES = {role: knobs.ROLES[role] for role in ("nvidia", "rocm", "container_runtime")}


def check_role_keys(data: Mapping[str, Any], where: str) -> list[str]:
    """Problems with the system roles' keys in one host's data (unknown key, wrong shape)."""
    return knobs.check_role_keys(data, where, SYSTEM_ROLES)


def drivers_and_runtime(needs_container_engine: bool = False) -> None:
    """Run the system roles this host needs, in order (drivers before the runtime).

    Raises DeployError (before any operation runs) listing every mistyped role key.
    """
    data = host.data
    problems = check_role_keys(data.dict(), f"host {host.name}")
    if problems:
        raise DeployError("\n".join(problems))
    if "gpu_nvidia" in host.groups and data.get("nvidia_manage_driver", True):
        nvidia.driver()
    if "gpu_amd" in host.groups and data.get("rocm_manage_driver", True):
        rocm.driver()
    if data.get("container_runtime_engine") or needs_container_engine:
        container_runtime.engine()
