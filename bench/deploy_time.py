"""Deploy time: a first deploy and a no-op re-run against 1, 3 and 6 container hosts.

Each size gets a fresh local container fleet (``deploy/lab/localfleet.py``: podman systemd hosts
with emulated GPUs) named ``mfb<n><random>``, torn down afterwards. The hosts mix the three
kinds of ``inventory/local.py``: CPU + real llama-server + the router, NVIDIA + Ollama
stand-in, AMD + llama-swap stand-in (1 host = the CPU one, 3 = one of each, 6 = two of each).
The stand-in releases, the GGUF model and the host data come from ``deploy/lab/localstack.py``
(what the demo and the fleet tests deploy), served on the podman bridge. Both runs are
``pyinfra -y --json bench/fleet_inventory.py deploy.py`` from a snapshot of one commit; the
report keeps wall time and pyinfra's totals (the re-run must change nothing).

    sudo .venv/bin/python -m bench.deploy_time --hosts 1 3 6 --out bench/results/deploy_time.json

Needs root, podman, the host image and the llama-server build (``deploy/setup.sh --all``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from modelfleet.deploy.lab import localfleet, localstack

REPO = Path(__file__).resolve().parents[1]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
KINDS = (  # the CPU host first: it runs the router (Ollama's 11434 would clash on a GPU host)
    ("cpu-llama{}", "cpu"),
    ("gpu-nv{}", "rtx4090x2"),
    ("gpu-amd{}", "mi300x"),
)


def hosts_for(count: int) -> list[localfleet.ContainerHost]:
    """1 host: the CPU + router one; then the three kinds in turn (3 = one of each, 6 = two)."""
    hosts = []
    for index in range(count):
        pattern, profile = KINDS[index % len(KINDS)]
        hosts.append(localfleet.ContainerHost(pattern.format(index // len(KINDS) + 1), profile))
    return hosts


def snapshot(commit: str, into: Path) -> Path:
    """The committed tree at ``commit``: runs must not pick up files being edited meanwhile
    (the router's release id hashes its sources, so an edit would look like a change)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_pyinfra(tree: Path, env: dict[str, str], log: Path) -> dict[str, Any]:
    args = [PYINFRA, "-y", "--json", "--group-data", "inventory/group_data"]
    args += ["bench/fleet_inventory.py", "deploy.py"]
    start = time.monotonic()
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"pyinfra exited {done.returncode}; see {log}:\n{done.stderr[-3000:]}")
    results = json.loads(done.stdout)["results"]
    changed = sorted({op["name"] for op in results["operations"] if op["success"]})
    return {"seconds": round(seconds, 1), "totals": results["totals"], "changed_ops": changed}


def measure(count: int, work: Path, tree: Path) -> dict[str, Any]:
    fleet = f"mfb{count}{secrets.token_hex(2)}"
    specs = hosts_for(count)
    started = time.monotonic()
    try:
        localfleet.up(specs, fleet=fleet)
        up_s = time.monotonic() - started
        files = work / f"files-{count}"
        files.mkdir()
        stack = localstack.build_stack_files(files)
        with localstack.serve_files(files) as files_url:
            data_file = work / f"data-{count}.json"
            catalog = localstack.demo_catalog(files_url)
            data = localstack.stack_data(files_url, stack, catalog)
            # Containers cannot load kernel modules: leave the GPU driver roles out, as the
            # Molecule scenarios do (the driver roles have their own fleet test).
            data |= {"nvidia_manage_driver": False, "rocm_manage_driver": False}
            localstack.write_data(data_file, data)
            env = localstack.fleet_env(fleet, data_file, files_url) | {"PYTHONPATH": str(tree)}
            print(f"{count} host(s): fleet {fleet} up in {up_s:.1f} s; first deploy ...")
            first = run_pyinfra(tree, env, work / f"first-{count}.log")
            print(f"  first deploy {first['seconds']} s {first['totals']}; no-op re-run ...")
            again = run_pyinfra(tree, env, work / f"noop-{count}.log")
            print(f"  no-op re-run {again['seconds']} s {again['totals']}: {again['changed_ops']}")
    finally:
        localfleet.down(fleet)
    return {
        "hosts": count,
        "kinds": [f"{h.name} ({h.gpu})" for h in specs],
        "containers_up_s": round(up_s, 1),
        "first_s": first["seconds"],
        "first_totals": first["totals"],
        "noop_s": again["seconds"],
        "noop_totals": again["totals"],
        "noop_changed_ops": again["changed_ops"],
        "loadavg_after": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--commit", default="HEAD", help="deploy this commit's tree")
    parser.add_argument("--keep-logs", type=Path, help="copy pyinfra logs here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from bench.proxy_overhead import machine

    commit = subprocess.run(
        ["git", "rev-parse", args.commit], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    report: dict[str, Any] = {
        "benchmark": "deploy_time",
        "command": "python -m bench.deploy_time " + " ".join(sys.argv[1:]),
        "commit": commit,
        "machine_before": machine(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="mf-deploy-bench-") as tmp:
        tree = snapshot(commit, Path(tmp) / "tree")
        try:
            for count in args.hosts:
                report["runs"].append(measure(count, Path(tmp), tree))
        finally:
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in Path(tmp).glob("*.log"):
                    shutil.copy(log, args.keep_logs / log.name)
    report["machine_after"] = machine()
    print(f"\n{'hosts':>5}{'first deploy s':>16}{'no-op re-run s':>16}  changed on re-run")
    for run in report["runs"]:
        print(
            f"{run['hosts']:>5}{run['first_s']:>16.1f}{run['noop_s']:>16.1f}  "
            f"{run['noop_totals']['success']} ({', '.join(run['noop_changed_ops'])})"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
