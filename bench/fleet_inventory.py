"""pyinfra inventory for bench/deploy_time.py: every running host of one local container fleet.

Like ``inventory/local.py`` (same host data, from ``deploy/lab/localstack.py``), but for any
number of hosts: each host joins the group of its emulated GPU (``rtx4090x2`` -> gpu_nvidia,
``mi300x`` -> gpu_amd, ``cpu`` -> cpu); the first cpu host (else the first host) also runs
the router.
The group data comes from ``inventory/group_data``: run pyinfra with
``--group-data inventory/group_data``. Environment (both required; set by bench/deploy_time.py):
``MODELFLEET_FLEET``, ``MODELFLEET_LOCAL_DATA``.
"""

import json
import os
from pathlib import Path

from modelfleet.deploy.lab import localfleet

_fleet = os.environ["MODELFLEET_FLEET"]
# The stand-in releases, the real llama-server and the model catalog, as deploy/lab/localstack.py
# writes them for the demo and the fleet tests (``stack_data``).
_fleet_data = {
    "fleet_name": f"bench-{_fleet}",
    **json.loads(Path(os.environ["MODELFLEET_LOCAL_DATA"]).read_text()),
}

_GROUP_OF_PROFILE = {"rtx4090x2": "gpu_nvidia", "mi300x": "gpu_amd", "cpu": "cpu"}
_groups: dict[str, list[tuple[str, dict]]] = {"gpu_nvidia": [], "gpu_amd": [], "cpu": []}
for _host in sorted(localfleet.status(_fleet), key=lambda h: h.name):
    _data = {**_fleet_data, "node_name": _host.name, "address": _host.address}
    _data |= localfleet.ssh_host_data(_host)
    _groups[_GROUP_OF_PROFILE[_host.gpu or "cpu"]].append((_host.name, _data))
if not any(_groups.values()):
    raise RuntimeError(f"bench/fleet_inventory.py: fleet {_fleet!r} has no running hosts")

gpu_nvidia = _groups["gpu_nvidia"]
gpu_amd = _groups["gpu_amd"]
cpu = _groups["cpu"]
router = [(cpu or gpu_nvidia or gpu_amd)[0][0]]
