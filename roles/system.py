"""Phase 2 of a deploy: GPU drivers, then the container runtime, where a host wants them.

- ``nvidia.driver()`` on hosts in ``gpu_nvidia``, unless ``nvidia_manage_driver`` is false;
- ``rocm.driver()`` on hosts in ``gpu_amd``, unless ``rocm_manage_driver`` is false;
- ``container_runtime.engine()`` on hosts with ``container_runtime_engine`` set, or that run a
  backend in a container (``needs_container_engine``; the engine then defaults to podman).

Set ``*_manage_driver: False`` for hosts whose driver is managed elsewhere (or emulated, as
in ``inventory/local.py``).

Example (``deploy/orchestrate_phases.py``)::

    from roles import system
    system.drivers_and_runtime(needs_container_engine=any(
        inst.install == "container" for inst in host_plan.instances))
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pyinfra import host
from pyinfra.api import DeployError

from roles import container_runtime, nvidia, rocm

# Each role's key prefix and its knobs: a key with the prefix that is not a knob is a typo.
ROLE_KEYS: dict[str, dict[str, Any]] = {
    "nvidia_": nvidia.DEFAULTS,
    "rocm_": rocm.DEFAULTS,
    "container_runtime_": container_runtime.DEFAULTS,
}


def check_role_keys(data: Mapping[str, Any], where: str) -> list[str]:
    """Problems with the system roles' keys in one host's data (unknown key, wrong shape).

    ``where`` starts each line, e.g. ``"inventory/prod.py: host gpu-01"``::

        check_role_keys({"nvidia_driver_brnach": "550"}, "inv.py: host a")
        # ["inv.py: host a: key nvidia_driver_brnach: unknown nvidia key
        #   (did you mean 'nvidia_driver_branch'?)"]
    """
    problems = []
    for key, value in data.items():
        for prefix, defaults in ROLE_KEYS.items():
            if not key.startswith(prefix):
                continue
            if key not in defaults:
                close = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{where}: key {key}: unknown {prefix.rstrip('_')} key{hint}")
            elif isinstance(defaults[key], list) and not isinstance(value, list | tuple):
                problems.append(f"{where}: key {key}: expected a list, got {value!r}")
    return problems


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
