"""Fleet changes under load: what clients see while the deploy changes the fleet.

A fresh local container fleet (``inventory/local.py``'s three hosts, ``deploy/lab/localfleet.py``)
is deployed with ``gemma3-270m`` on all three backends: the Ollama stand-in (gpu-nv1), the
llama-swap stand-in (gpu-amd1) and the real llama.cpp ``llama-server`` (cpu-llama1, which also
runs the router). ``bench/rolling_load.py`` then streams chat completions through the router
from ``--clients`` clients, non-stop, while the deploy makes one change per scenario:

a. ``model-set``: a model joins the llama-swap host's set; llama-swap reads its config only at
   start, so its instance restarts (drained in the router, in its batch);
b. ``backend-release``: both stand-ins go from release v1 to v2 (new release archives and
   sha256): the Ollama and llama-swap instances restart on the new binaries, drained, in one
   batch (gemma3-270m keeps its copy on the llama-server host meanwhile);
c. ``router-release``: a new router release (the same code with one changed comment, so a new
   release id) replaces the running one: the old process finishes what it serves while the
   new one takes the socket over (systemd socket activation).

Per scenario: requests sent, ok, failed (no answer) and cut (a stream that did not finish),
and the latency of requests that ran during the deploy against those before it. The stand-ins
stream at ``STANDIN_TOKENS_PER_S`` (20 here), so their answers take about a second, like a
small model's, and a restart finds requests in flight.

    sudo .venv/bin/python -m bench.rolling_change --out bench/results/rolling_change.json

``tests/fleet/test_rolling_change.py`` runs the same scenarios and asserts 0 failed and 0 cut.
Traffic goes only to the fleet's container hosts. Needs root, podman, the host image and the
llama-server build (``bash deploy/setup.sh --all``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.deploy.inventory import Versions
from modelfleet.deploy.lab import localfleet, localstack
from modelfleet.deploy.lab.standins.release import build_llama_swap_release, build_ollama_release

REPO = Path(__file__).resolve().parents[1]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
MODEL = localstack.GEMMA
ROUTER_HOST = "cpu-llama1"
# The stand-in releases the fleet starts with are Versions()'s; v2 are these.
OLLAMA_V2 = "0.12.7"
LLAMA_SWAP_V2 = "v173"


class DeployFailed(RuntimeError):
    pass


@dataclass
class BenchFleet:
    """A deployed local fleet and how to change it."""

    name: str
    hosts: list[localfleet.RunningHost]
    env: dict[str, str]
    data_file: Path
    files_dir: Path
    files_url: str
    data: dict[str, Any]

    @property
    def router_url(self) -> str:
        address = next(h.address for h in self.hosts if h.name == ROUTER_HOST)
        return f"http://{address}:11434"

    def container(self, host: str) -> str:
        return next(h.container for h in self.hosts if h.name == host)

    def update(self, **overrides: Any) -> None:
        self.data = {**self.data, **overrides}
        localstack.write_data(self.data_file, self.data)

    def deploy(self, cwd: Path = REPO) -> dict[str, Any]:
        """``pyinfra -y --json inventory/local.py deploy.py``: JSON results and stderr."""
        done = subprocess.run(
            [PYINFRA, "-y", "--json", "inventory/local.py", "deploy.py"],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            result: dict[str, Any] = json.loads(done.stdout)
        except json.JSONDecodeError:
            result = {}
        result["stderr"] = done.stderr
        failed = result.get("results", {}).get("failed_hosts")
        if done.returncode != 0 or failed:
            raise DeployFailed(f"the deploy failed ({failed}):\n{done.stderr[-4000:]}")
        return result

    def main_pid(self, host: str, unit: str) -> str:
        """The main PID of ``unit`` (a glob such as ``ollama-*`` matches one service)."""
        return self.sh(
            host,
            f"systemctl show -p MainPID --value $(systemctl list-units "
            f"--plain --no-legend --type=service '{unit}' | cut -d' ' -f1)",
        )

    def sh(self, host: str, command: str) -> str:
        return subprocess.run(
            ["podman", "exec", self.container(host), "sh", "-c", command],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip


@contextlib.contextmanager
def bench_fleet(workdir: Path, name: str | None = None) -> Iterator[BenchFleet]:
    """Bring up and deploy the fleet (torn down afterwards, also on failure)."""
    name = name or f"mfr{secrets.token_hex(3)}"
    files_dir = workdir / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    files = localstack.build_stack_files(files_dir)
    try:
        hosts = localfleet.up(localfleet.LOCAL_HOSTS, fleet=name)
        with localstack.serve_files(files_dir) as files_url:
            gemma = localstack.gemma_entry(files_url, ["gpu_nvidia", "gpu_amd", "cpu"])
            data = localstack.stack_data(files_url, files, {MODEL: gemma})
            data["max_loaded_models"] = 2
            data["ollama_extra_env"] = {
                **data["ollama_extra_env"],
                "STANDIN_TOKENS_PER_S": "20",
            }
            data_file = workdir / "data.json"
            env = localstack.fleet_env(name, data_file, files_url)
            fleet = BenchFleet(name, hosts, env, data_file, files_dir, files_url, data)
            fleet.update()
            fleet.deploy()
            yield fleet
    finally:
        localfleet.down(name)


@dataclass
class Outcome:
    """What the clients saw during one scenario."""

    scenario: str
    sent: int
    ok: int
    failed: int
    cut: int
    deploy_s: float
    changed: int  # operations the deploy changed
    restarted: bool  # the unit (or router) the scenario targets got a new process
    latency_before_s: dict[str, float]  # p50 / p95 / max of requests before the deploy
    latency_during_s: dict[str, float]  # ... of requests that started during the deploy
    extra_p95_s: float
    extra_max_s: float
    errors: list[str] = field(default_factory=list)
    drain_lines: list[str] = field(default_factory=list)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


@contextlib.contextmanager
def load(url: str, clients: int, workdir: Path) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Run ``bench/rolling_load.py`` against ``url``; the yielded function stops it and returns
    its records."""
    out = workdir / f"load-{secrets.token_hex(3)}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.rolling_load", "--url", url, "--model", MODEL,
         "--clients", str(clients), "--out", str(out)],
        cwd=REPO,
    )  # fmt: skip
    records: list[dict[str, Any]] = []

    def stop() -> list[dict[str, Any]]:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
        if not records:
            records.extend(json.loads(out.read_text()))
        return records

    try:
        deadline = time.monotonic() + 30
        while not out.with_suffix(".started").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def measure(
    fleet: BenchFleet,
    scenario: str,
    change: Callable[[], dict[str, Any]],
    target: tuple[str, str],
    workdir: Path,
    clients: int = 4,
    before_s: float = 8.0,
    after_s: float = 4.0,
) -> Outcome:
    """Load on, ``before_s`` of steady state, the change (a deploy), ``after_s``, load off."""
    pid_before = fleet.main_pid(*target)
    with load(fleet.router_url, clients, workdir) as stop:
        time.sleep(before_s)
        started = time.time()
        result = change()
        ended = time.time()
        time.sleep(after_s)
        records = stop()
    totals = result["results"]["totals"]
    outcome = {kind: sum(r["outcome"] == kind for r in records) for kind in ("ok", "failed", "cut")}
    before = [r["ended"] - r["started"] for r in records if r["ended"] < started]
    during = [r["ended"] - r["started"] for r in records if started <= r["started"] <= ended]
    before_stats, during_stats = _stats(before), _stats(during)
    return Outcome(
        scenario=scenario,
        sent=len(records),
        ok=outcome["ok"],
        failed=outcome["failed"],
        cut=outcome["cut"],
        deploy_s=round(ended - started, 1),
        changed=int(totals["success"]),
        restarted=fleet.main_pid(*target) != pid_before,
        latency_before_s=before_stats,
        latency_during_s=during_stats,
        extra_p95_s=round(during_stats["p95"] - before_stats["p95"], 3),
        extra_max_s=round(during_stats["max"] - before_stats["max"], 3),
        errors=sorted({r["error"] for r in records if r["outcome"] != "ok" and r["error"]})[:10],
        drain_lines=[
            line.split("router: ", 1)[1]
            for line in result["stderr"].splitlines()
            if "] router: " in line
        ],
    )


def new_router_release(into: Path) -> Path:
    """A copy of the project whose router is the same code under a new release id."""
    parts = ("modelfleet", "deploy", "roles", "router", "templates", "inventory", "tests", "bench")
    for part in parts:
        # modelfleet/ links the folders next to it: copied as links, it imports the copy.
        shutil.copytree(
            REPO / part, into / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    for part in ("deploy.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / part, into / part)
    marker = into / "router" / "__init__.py"
    marker.write_text(marker.read_text() + f"\n# release {secrets.token_hex(4)}\n")
    return into


def scenarios(fleet: BenchFleet, workdir: Path) -> list[tuple[str, Callable[[], Any], Any]]:
    """(name, change, (host, unit) whose process must be new afterwards) per scenario."""

    def model_set() -> dict[str, Any]:
        gemma = localstack.gemma_entry(fleet.files_url, ["gpu_nvidia", "gpu_amd", "cpu"])
        swap_b = {**localstack.gemma_entry(fleet.files_url, ["gpu_amd"]), "ollama": None}
        fleet.update(model_catalog={MODEL: gemma, "gemma3-270m-b": swap_b})
        return fleet.deploy()

    def backend_release() -> dict[str, Any]:
        ollama = build_ollama_release(fleet.files_dir, OLLAMA_V2)
        swap = build_llama_swap_release(fleet.files_dir, LLAMA_SWAP_V2)
        fleet.update(
            versions={"ollama": OLLAMA_V2, "llama_swap": LLAMA_SWAP_V2},
            ollama_release_url=f"{fleet.files_url}/{ollama.filename}",
            ollama_release_sha256=ollama.sha256,
            llama_swap_release_sha256=swap.sha256,
        )
        return fleet.deploy()

    copy = workdir / "next-release"

    def router_release() -> dict[str, Any]:
        return fleet.deploy(cwd=copy)

    return [
        ("a: model set (llama-swap restarts)", model_set, ("gpu-amd1", "llama-swap-*")),
        (
            "b: backend releases (both stand-ins v1 -> v2)",
            backend_release,
            ("gpu-amd1", "llama-swap-*"),
        ),
        ("c: router release", router_release, (ROUTER_HOST, "modelfleet-router.service")),
    ]


def run_all(workdir: Path, clients: int) -> dict[str, Any]:
    with bench_fleet(workdir) as fleet:
        new_router_release(workdir / "next-release")
        outcomes = []
        for name, change, target in scenarios(fleet, workdir):
            outcomes.append(measure(fleet, name, change, target, workdir, clients=clients))
        rerun = fleet.deploy(cwd=workdir / "next-release")
    return {
        "clients": clients,
        "model": MODEL,
        "versions": {
            "ollama": [Versions().ollama, OLLAMA_V2],
            "llama_swap": [Versions().llama_swap, LLAMA_SWAP_V2],
        },
        "outcomes": [asdict(o) for o in outcomes],
        "rerun_changed": rerun["results"]["totals"]["success"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", default="bench/results/rolling_change.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mf-rolling-") as tmp:
        started = time.time()
        report = run_all(Path(tmp), args.clients)
    report["wall_s"] = round(time.time() - started)
    report["command"] = "sudo .venv/bin/python -m bench.rolling_change " + " ".join(sys.argv[1:])
    report["load_avg_1m"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for o in report["outcomes"]:
        print(
            f"{o['scenario']:<48} sent {o['sent']:>4}  ok {o['ok']:>4}  failed {o['failed']}  "
            f"cut {o['cut']}  deploy {o['deploy_s']} s  p95 {o['latency_before_s']['p95']} -> "
            f"{o['latency_during_s']['p95']} s  max {o['latency_before_s']['max']} -> "
            f"{o['latency_during_s']['max']} s  restarted={o['restarted']}"
        )


if __name__ == "__main__":
    main()
