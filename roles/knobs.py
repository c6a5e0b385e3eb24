"""The roles' knobs: each role's ``defaults.py`` lists every knob it reads, under its prefix.

A host data key with a role's prefix that is not one of that role's knobs is a typo: the
deploy stops before any host is touched, naming the inventory file, the host, the key and the
closest known key. Each backend role also checks the values it cannot start without
(``check`` in its ``defaults.py``: a release sha256, a binary source).

Example::

    check_role_keys({"ollama_prune_model": True}, "inventory/prod.py: host gpu-01")
    # ["inventory/prod.py: host gpu-01: key ollama_prune_model: not a knob of the ollama
    #   role (closest known key: ollama_prune_models)"]
    role_values({"ollama_user": "ai"})["ollama_user"]   # "ai"; unset knobs: their default
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from modelfleet.deploy.plan import FLEET_KEYS
from modelfleet.roles.container_runtime.defaults import DEFAULTS as CONTAINER_RUNTIME
from modelfleet.roles.keepalived.defaults import DEFAULTS as KEEPALIVED
from modelfleet.roles.llama_server.defaults import DEFAULTS as LLAMA_SERVER
from modelfleet.roles.llama_swap.defaults import DEFAULTS as LLAMA_SWAP
from modelfleet.roles.nvidia.defaults import DEFAULTS as NVIDIA
from modelfleet.roles.ollama.defaults import DEFAULTS as OLLAMA
from modelfleet.roles.redis_state.defaults import DEFAULTS as REDIS_STATE
from modelfleet.roles.rocm.defaults import DEFAULTS as ROCM
from modelfleet.roles.router.defaults import DEFAULTS as ROUTER

# Role name -> (key prefix, its knobs with their defaults). A role's knobs all carry its prefix
# (llama_swap also reads the llama_server binary knobs it installs the binary with).
ROLES: dict[str, tuple[str, Mapping[str, Any]]] = {
    "ollama": ("ollama_", OLLAMA),
    "llama_swap": ("llama_swap_", LLAMA_SWAP),
    "llama_server": ("llama_server_", LLAMA_SERVER),
    "router": ("router_", ROUTER),
    "nvidia": ("nvidia_", NVIDIA),
    "rocm": ("rocm_", ROCM),
    "container_runtime": ("container_runtime_", CONTAINER_RUNTIME),
    "redis_state": ("redis_state_", REDIS_STATE),
    "keepalived": ("keepalived_", KEEPALIVED),
}


def role_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """Every role knob: the host's value where its data sets one, else the role's default."""
    values: dict[str, Any] = {}
    for _, defaults in ROLES.values():
        values.update({key: data.get(key, default) for key, default in defaults.items()})
    return values


def check_role_keys(
    data: Mapping[str, Any], where: str, roles: Mapping[str, tuple[str, Mapping[str, Any]]] = ROLES
) -> list[str]:
    """Problems with the role keys of one host's data: unknown keys, a list knob not a list."""
    problems = []
    for key, value in data.items():
        if key in FLEET_KEYS:  # router_state, router_vip: the fleet's, not the router role's
            continue
        for role, (prefix, defaults) in roles.items():
            if not key.startswith(prefix):
                continue
            own = [known for known in defaults if known.startswith(prefix)]
            if key not in defaults:
                closest = difflib.get_close_matches(key, own, n=1, cutoff=0.0)
                problems.append(
                    f"{where}: key {key}: not a knob of the {role} role (closest known key: "
                    f"{closest[0] if closest else 'none'}); its knobs: roles/{role}/defaults.py"
                )
            elif isinstance(defaults[key], list) and not isinstance(value, list | tuple):
                problems.append(f"{where}: key {key}: expected a list, got {value!r}")
    return problems
