"""pyinfra inventory for bench/deploy_time.py: every running host of one local container fleet.

Like ``inventory/local.py`` (same model catalog, same host data), but for any number of
hosts: each host joins the group of its emulated GPU (``rtx4090x2`` -> gpu_nvidia, ``mi300x``
-> gpu_amd, ``cpu`` -> cpu) and the first cpu host (else the first host) also runs the router.
The group data comes from ``inventory/group_data``: run pyinfra with
``--group-data inventory/group_data``. Environment (all required; set by bench/deploy_time.py):
``MODELFLEET_FLEET``, ``MODELFLEET_FILES_URL``, ``MODELFLEET_LOCAL_DATA``.
"""

import json
import os
from pathlib import Path

from deploy import localfleet

_fleet = os.environ["MODELFLEET_FLEET"]
_files_url = os.environ["MODELFLEET_FILES_URL"]
_extra = json.loads(Path(os.environ["MODELFLEET_LOCAL_DATA"]).read_text())

_fleet_data = {
    "fleet_name": f"bench-{_fleet}",
    "model_catalog": {
        "gemma3-270m": {
            "ollama": "gemma3:270m",
            "gguf": {
                "url": f"{_files_url}/gemma-3-270m-q4_k_m.gguf",
                "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                "file": "gemma-3-270m-q4_k_m.gguf",
            },
            "size_mb": 242,
            "kv_mb_per_1k_ctx": 18,
            "ctx": 4096,
            "slots": 2,
            "groups": ["gpu_nvidia", "gpu_amd", "cpu"],
            "aliases": ["tiny"],
        },
    },
    "nvidia_allow_reboot": False,
    **_extra,
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
