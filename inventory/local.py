"""The local container fleet (``deploy/lab/localfleet.py``) as a pyinfra inventory.

    .venv/bin/python -m modelfleet.deploy.lab.localfleet up    # 3 podman hosts, GPUs emulated
    .venv/bin/pyinfra -y inventory/local.py deploy.py
    .venv/bin/python -m modelfleet.deploy.lab.localfleet down

Hosts (addresses are read from podman when pyinfra loads this file):

=========== ======================= ======================================= ===============
host        groups                  GPUs (stand-in tools, tests/fakegpu)    backend
=========== ======================= ======================================= ===============
gpu-nv1     gpu_nvidia              2 x RTX 4090 (profile rtx4090x2)        ollama stand-in
gpu-amd1    gpu_amd                 1 x MI300X (profile mi300x)             llama-swap stand-in
cpu-llama1  cpu, router             none                                    real llama-server
=========== ======================= ======================================= ===============

Backend kinds and tuning come from ``inventory/group_data/<group>.py`` as for any fleet; the
GPUs are detected on the hosts (no ``gpus:`` override), so the detection facts run for real
against the stand-in tools.

Environment:

- ``MODELFLEET_FLEET``: the fleet (podman label) to read, default ``modelfleet``;
- ``MODELFLEET_CONNECTOR``: ``ssh`` (default; about 2-3x faster here) or ``podman``
  (``podman exec``, no sshd needed);
- ``MODELFLEET_FILES_URL``: where the hosts download models and releases, default
  ``http://10.88.0.1:8765`` (the host side of the podman bridge: containers cannot reach
  this machine's 127.0.0.1);
- ``MODELFLEET_LOCAL_DATA``: a JSON file whose keys are added to every host's data (e.g. the
  stand-in releases' URLs and sha256, or another ``model_catalog``); default
  ``.fleet/<fleet>/data.json`` when it exists.
"""

import json
import os
import runpy
from pathlib import Path

from modelfleet.deploy.lab import localfleet

_fleet = os.environ.get("MODELFLEET_FLEET", localfleet.DEFAULT_FLEET)
_connector = os.environ.get("MODELFLEET_CONNECTOR", "ssh")
_files_url = os.environ.get("MODELFLEET_FILES_URL", f"http://{localfleet.BRIDGE_GATEWAY}:8765")
_data_file = Path(os.environ.get("MODELFLEET_LOCAL_DATA", f".fleet/{_fleet}/data.json"))

if _connector not in ("ssh", "podman"):
    raise ValueError(f"MODELFLEET_CONNECTOR={_connector!r}: use 'ssh' or 'podman'")

_running = {host.name: host for host in localfleet.status(_fleet)}
_missing = [spec.name for spec in localfleet.LOCAL_HOSTS if spec.name not in _running]
if _missing:
    # the demo's fleet is "demo": name the fleets that do run, and how to pick one
    _others = sorted({host.fleet for host in localfleet.status(None)} - {_fleet})
    _hint = "".join(f"; fleet {name!r} runs: MODELFLEET_FLEET={name}" for name in _others)
    raise RuntimeError(
        f"inventory/local.py: hosts {', '.join(_missing)} of fleet {_fleet!r} are not running"
        f"{_hint}; or start them with: "
        f".venv/bin/python -m modelfleet.deploy.lab.localfleet up --fleet {_fleet}"
    )

# Fleet-wide data for this fleet only (the same on every host, as deploy/inventory.py requires).
_fleet_data = {
    "fleet_name": f"local-{_fleet}",
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
    # The GPUs are emulated with their driver "installed" (the stand-in tools): the driver
    # roles have nothing to do here. tests/fleet/test_system_roles.py covers them, from
    # stand-in apt repositories, on hosts emulating a GPU without its driver.
    "nvidia_manage_driver": False,
    "rocm_manage_driver": False,
    "nvidia_allow_reboot": False,
    # group_data/all.py's router settings (host data replaces a group's dict whole), and the
    # access log: replay the demo's own traffic with `modelfleet simulate --access-log`
    "router": {
        **runpy.run_path(str(Path(__file__).parent / "group_data" / "all.py"))["router"],
        "access_log": "/var/log/modelfleet/access.jsonl",
    },
}
if _data_file.is_file():
    _fleet_data.update(json.loads(_data_file.read_text()))


def _host(name: str) -> tuple[str, dict]:
    running = _running[name]
    data = {**_fleet_data, "node_name": name, "address": running.address}
    if _connector == "ssh":
        return name, {**data, **localfleet.ssh_host_data(running)}
    return f"@podman/{running.container}", data


gpu_nvidia = [_host("gpu-nv1")]
gpu_amd = [_host("gpu-amd1")]
cpu = [_host("cpu-llama1")]
# The router shares the llama-server host (ports 11434 and 8080 do not clash).
router = [cpu[0][0]]
