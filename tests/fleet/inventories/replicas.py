"""Two router replicas on the local container fleet (``tests/fleet/test_router_replicas.py``).

=====  ===================  ============================================================
host   groups               runs
=====  ===================  ============================================================
ra     cpu, router          real llama-server, router replica, Redis (router_state), VIP
rb     cpu, router          real llama-server, router replica, VIP (standby)
=====  ===================  ============================================================

Both hosts are on a podman network of the fleet's own (the VIP is an address of it).
Environment: ``MODELFLEET_FLEET`` (the fleet's podman label) and ``MODELFLEET_LOCAL_DATA`` (a
JSON file merged into every host's data: the catalog, ``router_state``, ``router_vip``, where
the hosts download the model and the llama-server binary).
"""

import json
import os
from pathlib import Path

from modelfleet.deploy.lab import localfleet

_HOSTS = ("ra", "rb")

_fleet = os.environ["MODELFLEET_FLEET"]
_data = json.loads(Path(os.environ["MODELFLEET_LOCAL_DATA"]).read_text())
_running = {host.name: host for host in localfleet.status(_fleet)}
_missing = [name for name in _HOSTS if name not in _running]
if _missing:
    raise RuntimeError(f"tests/fleet/inventories/replicas.py: {_missing} of {_fleet} not running")


def _host(name: str) -> tuple[str, dict]:
    running = _running[name]
    data = {**_data, "node_name": name, "address": running.address}
    return name, {**data, **localfleet.ssh_host_data(running)}


cpu = [_host(name) for name in _HOSTS]
router = list(_HOSTS)
