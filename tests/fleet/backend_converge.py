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

from modelfleet.deploy.lab import localstack

REPO = Path(__file__).resolve().parents[2]
RTX_4090 = {"name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564, "count": 2}
MI300X = {"name": "AMD Instinct MI300X", "vram_mb": 196592}

ROLES: dict[str, dict[str, Any]] = {
    "ollama": {"groups": ["gpu_nvidia"], "backend": "ollama", "gpus": [RTX_4090], "port": 18771},
    "llama_swap": {"groups": ["gpu_amd"], "backend": "llama-swap", "gpus": [MI300X], "port": 18772},
    "llama_server": {"groups": ["cpu"], "backend": "llama-server", "gpus": [], "port": 18773},
    "router": {"groups": ["cpu", "router"], "backend": "llama-server", "gpus": [], "port": 18774},
}


def fleet_data(files_url: str, files: localstack.StackFiles) -> dict[str, Any]:
    groups = ["gpu_nvidia", "gpu_amd", "cpu"]
    catalog = {localstack.GEMMA: localstack.gemma_entry(files_url, groups)}
    return {
        **localstack.stack_data(files_url, files, catalog),
        "fleet_name": "molecule",
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
    state_dir = REPO / ".fleet" / f"molecule-{args.role}"
    state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            files = localstack.build_stack_files(Path(tmp))
        except localstack.StackError as exc:
            print(f"backend_converge: {exc}", file=sys.stderr)
            return 2
        with localstack.serve_files(Path(tmp), port=ROLES[args.role]["port"]) as files_url:
            inventory = state_dir / "inventory.py"
            write_inventory(inventory, args.role, args.containers, fleet_data(files_url, files))
            pyinfra = str(Path(sys.executable).with_name("pyinfra"))
            done = subprocess.run(
                [pyinfra, "-y", "--json", str(inventory), "deploy.py"], cwd=REPO, check=False
            )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
