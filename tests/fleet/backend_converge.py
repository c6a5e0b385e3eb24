"""Converge one backend/router role on existing containers: what their Molecule scenarios run.

    python -m tests.fleet.backend_converge --role ollama CONTAINER [CONTAINER ...]

Roles: ``ollama`` (Ollama stand-in release, native), ``llama_swap`` (llama-swap stand-in
release + the real llama-server binary), ``llama_server`` (the real llama-server, router mode,
the real GGUF), ``router`` (llama-server + the modelfleet router on the same host).

For each run: build the stand-in releases, serve them and the GGUF on the podman bridge at a
fixed port (a second converge sees the same URLs: Molecule's idempotence step), write an
inventory that puts the containers in the role's group with everything the role needs (the
``gpus:`` override stands in for GPU detection), and run
``pyinfra -y --json INVENTORY deploy.py``: the project's own deploy, all phases. pyinfra's JSON
goes to stdout; the exit status is pyinfra's. The inventory stays at
``.fleet/molecule-<role>/inventory.py`` so ``pytest tests/infra --inventory`` can verify it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from deploy import localfleet
from tests.standins.llama import gguf_model_path, llama_server_bin
from tests.standins.release import build_releases, serve_releases

REPO = Path(__file__).resolve().parents[2]
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564, "count": 2}
MI300X = {"name": "AMD Instinct MI300X", "vram_mb": 196592}

ROLES: dict[str, dict[str, Any]] = {
    "ollama": {"groups": ["gpu_nvidia"], "backend": "ollama", "gpus": [RTX_4090], "port": 18771},
    "llama_swap": {"groups": ["gpu_amd"], "backend": "llama-swap", "gpus": [MI300X], "port": 18772},
    "llama_server": {"groups": ["cpu"], "backend": "llama-server", "gpus": [], "port": 18773},
    "router": {"groups": ["cpu", "router"], "backend": "llama-server", "gpus": [], "port": 18774},
}


def fleet_data(files_url: str, releases: dict[str, Any], server_bin: Path) -> dict[str, Any]:
    return {
        "fleet_name": "molecule",
        "model_catalog": {
            "gemma3-270m": {
                "ollama": "gemma3:270m",
                "gguf": {
                    "url": f"{files_url}/{GEMMA_FILE}",
                    "sha256": GEMMA_SHA256,
                    "file": GEMMA_FILE,
                },
                "size_mb": 242,
                "kv_mb_per_1k_ctx": 18,
                "ctx": 2048,
                "slots": 1,
                "groups": ["gpu_nvidia", "gpu_amd", "cpu"],
                "llama_args": ["--no-jinja", "--chat-template", "gemma"],
            }
        },
        "ollama_release_url": f"{files_url}/{releases['ollama'].filename}",
        "ollama_release_sha256": releases["ollama"].sha256,
        "ollama_extra_env": {
            "STANDIN_CATALOG": '[{"name":"gemma3:270m","size_mb":242}]',
            "STANDIN_TOKENS_PER_S": "0",
        },
        "llama_swap_release_url": files_url + "/llama-swap_{number}_linux_amd64.tar.gz",
        "llama_swap_release_sha256": releases["llama-swap"].sha256,
        "llama_server_binary_path": str(server_bin),
        "llama_server_extra_args": ["--threads", "1"],
        "ram_mb": 8192,
        "cpu_cores": 2,
        # The GPUs are the gpus: override; there is no driver to manage in a container.
        "nvidia_manage_driver": False,
        "rocm_manage_driver": False,
    }


def write_inventory(path: Path, role: str, containers: list[str], data: dict[str, Any]) -> None:
    spec = ROLES[role]
    hosts = [
        (
            f"@podman/{name}",
            {**data, "node_name": name, "backend": spec["backend"], "gpus": spec["gpus"]},
        )
        for name in containers
    ]
    lines = [
        f'"""Molecule inventory for roles/{role} (written by tests/fleet/backend_converge.py)."""'
    ]
    for group in spec["groups"]:
        lines.append(f"{group} = {hosts!r}")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=sorted(ROLES), required=True)
    parser.add_argument("containers", nargs="+")
    args = parser.parse_args(argv)
    server_bin, model = llama_server_bin(), gguf_model_path()
    if server_bin is None or model is None:
        print("backend_converge: run bash deploy/llama_build.sh first", file=sys.stderr)
        return 2
    state_dir = REPO / ".fleet" / f"molecule-{args.role}"
    state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp)
        releases = build_releases(files, ollama_version="0.12.6", llama_swap_version="v172")
        (files / GEMMA_FILE).symlink_to(model)
        port = ROLES[args.role]["port"]
        with serve_releases(files, host=localfleet.BRIDGE_GATEWAY, port=port) as server:
            inventory = state_dir / "inventory.py"
            data = fleet_data(server.url, releases, server_bin)
            write_inventory(inventory, args.role, args.containers, data)
            pyinfra = str(Path(sys.executable).with_name("pyinfra"))
            done = subprocess.run(
                [pyinfra, "-y", "--json", str(inventory), "deploy.py"], cwd=REPO, check=False
            )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
