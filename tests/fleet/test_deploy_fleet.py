"""The issue's "Done when", end to end on a fresh local container fleet (marker ``fleet``).

1. three podman systemd hosts: gpu-nv1 (2x RTX 4090 emulated, Ollama stand-in), gpu-amd1
   (MI300X emulated, llama-swap stand-in), cpu-llama1 (the real llama-server + the router);
2. ``pyinfra -y --json inventory/local.py deploy.py`` converges them; the stand-in releases and
   the real GGUF come from a file server on the podman bridge, checked by sha256 like real
   downloads; the real llama-server binary is uploaded from the controller's build cache;
3. ``pytest tests/infra`` verifies them (services, ports, files, models, router, a real
   request routed to llama-server);
4. a second run changes nothing (``results.totals.success == 0``);
5. a new model set converges: only the affected host and the router change, the router stops
   routing the model that leaves a host before that host prunes it, and then serves the new
   catalog; a further run changes nothing;
6. bad inventory data stops the deploy before any operation, naming the host and the key;
7. a router release that fails its health check is reported for that host, the other hosts
   carry on, and the previous release stays in service; ``--limit gpu_amd`` touches that
   group only, and ``--limit router`` changes nothing (router.yaml covers the whole fleet);
8. another archive of the same Ollama version (a corrected URL and sha256) goes live;
9. the fleet is torn down (also when a step fails).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelfleet.deploy.lab import localfleet, localstack
from modelfleet.deploy.lab.localstack import GEMMA
from modelfleet.roles.router.wheelhouse import wheelhouse_path
from tests.fleet.conftest import REPO, new_fleet_name, run_pyinfra

QWEN = {
    "qwen2.5-0.5b": {
        "ollama": "qwen2.5:0.5b",
        "size_mb": 379,
        "kv_mb_per_1k_ctx": 12,
        "ctx": 2048,
        "slots": 1,
        "groups": ["gpu_nvidia"],
    }
}


@dataclass
class Fleet:
    name: str
    hosts: list[localfleet.RunningHost]
    env: dict[str, str]
    data_file: Path
    base_data: dict[str, Any]
    files_url: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def write_data(self, **overrides: Any) -> None:
        """The hosts' data: the base data with ``overrides`` (they replace the last ones)."""
        self.overrides = overrides
        localstack.write_data(self.data_file, {**self.base_data, **overrides})

    def deploy(self) -> dict[str, Any]:
        return run_pyinfra("inventory/local.py", "deploy.py", env=self.env)

    def container(self, host: str) -> str:
        return next(h.container for h in self.hosts if h.name == host)

    def address(self, host: str) -> str:
        return next(h.address for h in self.hosts if h.name == host)


def sh(fleet: Fleet, host: str, command: str) -> str:
    """A command's stdout on one of the fleet's hosts."""
    done = subprocess.run(
        ["podman", "exec", fleet.container(host), "sh", "-c", command],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def changed_hosts(result: dict[str, Any]) -> dict[str, list[str]]:
    """Operation names that changed something, per host."""
    changed: dict[str, list[str]] = {}
    for op in result["results"]["operations"]:
        for host in op["success"]:
            changed.setdefault(host, []).append(op["name"])
    return changed


@pytest.fixture(scope="module")
def fleet(fleet_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    name = new_fleet_name()
    files_dir = tmp_path_factory.mktemp("files")
    try:
        files = localstack.build_stack_files(files_dir)
    except localstack.StackError as exc:
        pytest.skip(str(exc))
    try:
        hosts = localfleet.up(localfleet.LOCAL_HOSTS, fleet=name)
        # The stand-in releases and the real GGUF, served on the podman bridge.
        with localstack.serve_files(files_dir) as files_url:
            gemma = localstack.gemma_entry(files_url, ["gpu_nvidia", "gpu_amd", "cpu"])
            base_data = {
                **localstack.stack_data(files_url, files, {GEMMA: gemma}),
                # Fixed, so a second model on a host does not change llama-server's
                # --models-max (a unit change, hence a restart) or OLLAMA_MAX_LOADED_MODELS.
                "max_loaded_models": 2,
            }
            data_file = tmp_path_factory.mktemp("data") / "data.json"
            env = localstack.fleet_env(name, data_file, files_url)
            result = Fleet(name, hosts, env, data_file, base_data, files_url)
            result.write_data()
            yield result
    finally:
        localfleet.down(name)


def run_infra_checks(fleet: Fleet) -> subprocess.CompletedProcess[str]:
    hosts = ",".join(f"podman://{h.container}" for h in fleet.hosts)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/infra",
            "--inventory",
            "inventory/local.py",
            f"--hosts={hosts}",
        ],
        cwd=REPO,
        env=fleet.env,
        capture_output=True,
        text=True,
        check=False,
    )


def assert_render_is_what_the_hosts_hold(fleet: Fleet) -> None:
    """``modelfleet render`` writes, byte for byte, every file the deploy put on each host."""
    out = Path(fleet.data_file).parent / "render-out"
    modelfleet = str(Path(sys.executable).with_name("modelfleet"))
    rendered = subprocess.run(
        [modelfleet, "render", "inventory/local.py", "--detect", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, **fleet.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    for running in fleet.hosts:
        files = sorted(p for p in (out / running.name).rglob("*") if p.is_file())
        assert files, f"modelfleet render wrote nothing for {running.name}"
        for path in files:
            on_host = "/" + str(path.relative_to(out / running.name))
            held = subprocess.run(
                ["podman", "exec", running.container, "cat", on_host],
                capture_output=True,
                check=True,
            ).stdout
            assert held == path.read_bytes(), f"{running.name}:{on_host} differs from the render"


def router_models(fleet: Fleet) -> set[str]:
    url = f"http://{fleet.address('cpu-llama1')}:11434/v1/models"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return {entry["id"] for entry in json.load(resp)["data"]}


def test_deploy_verify_rerun_change_converge(fleet: Fleet) -> None:
    first = fleet.deploy()
    totals = first["results"]["totals"]
    assert totals["error"] == 0 and not first["results"]["failed_hosts"], first["stderr"][-3000:]
    assert set(changed_hosts(first)) == {"gpu-nv1", "gpu-amd1", "cpu-llama1"}

    checks = run_infra_checks(fleet)
    assert checks.returncode == 0, checks.stdout[-4000:] + checks.stderr[-2000:]
    assert " passed" in checks.stdout and "failed" not in checks.stdout
    assert_render_is_what_the_hosts_hold(fleet)
    # Ollama (the stand-in asks nvidia-smi, as Ollama asks the driver) uses the two emulated
    # RTX 4090s its environment names by UUID: models load into VRAM, not onto the CPU.
    seen = sh(fleet, "gpu-nv1", "journalctl -u 'ollama-*' -o cat --no-pager | grep compute")
    assert 'gpus=2 total_vram="49128 MiB"' in seen.splitlines()[-1], seen

    second = fleet.deploy()
    assert second["results"]["totals"]["success"] == 0, changed_hosts(second)
    assert second["results"]["totals"]["error"] == 0

    # New model set: gemma leaves the NVIDIA group, qwen2.5 joins it, and the llama-server host
    # gets a second preset of the same GGUF.
    assert "qwen2.5-0.5b" not in router_models(fleet)
    server_pid = sh(fleet, "cpu-llama1", "systemctl show -p MainPID --value llama-server-cpu")
    gemma = localstack.gemma_entry(fleet.files_url, ["gpu_amd", "cpu"])
    gemma_b = {**localstack.gemma_entry(fleet.files_url, ["cpu"]), "ollama": None}
    fleet.write_data(model_catalog={GEMMA: gemma, "gemma3-270m-b": gemma_b, **QWEN})
    third = fleet.deploy()
    assert third["results"]["totals"]["error"] == 0, third["stderr"][-3000:]
    changed = changed_hosts(third)
    # Only the hosts whose models changed (the router host also serves llama-server); the
    # llama-swap host is untouched.
    assert set(changed) == {"gpu-nv1", "cpu-llama1"}, changed
    # On the llama-server + router host: the new presets, applied to the running server with
    # GET /models?reload=1 (no restart), the router rollout, and the health checks after them.
    allowed = ("llama-server backend | Config", "llama-server backend | Apply the new presets")
    assert all(
        name.startswith(("modelfleet router", "Health check", *allowed))
        for name in changed["cpu-llama1"]
    ), changed
    assert any(name.startswith(allowed[1]) for name in changed["cpu-llama1"]), changed
    assert any(name.startswith("modelfleet router | Roll out") for name in changed["cpu-llama1"])
    assert sh(fleet, "cpu-llama1", "systemctl show -p MainPID --value llama-server-cpu") == (
        server_pid
    ), "llama-server was restarted for a presets change"
    # A change without a restart drains nothing; the model leaving gpu-nv1 is waited on.
    assert " drained: " not in third["stderr"], third["stderr"][-3000:]
    assert "router: backend gpu-nv1-rtx-4090 (gemma3-270m) no longer routed" in third["stderr"]
    listed = json.loads(sh(fleet, "cpu-llama1", "curl -s 127.0.0.1:8080/models"))["data"]
    assert {"gemma3-270m", "gemma3-270m-b"} <= {entry["id"] for entry in listed}
    # Ollama pulled the new model and pruned the one that left its set, after the router had
    # stopped routing that model there (the live router.yaml without it, re-read in place).
    assert any("Models of" in name for name in changed["gpu-nv1"]), changed
    order = [op["name"] for op in third["results"]["operations"] if op["success"]]
    withdrawn = next(i for i, name in enumerate(order) if "Stop routing the models" in name)
    pruned = next(i for i, name in enumerate(order) if "Models of ollama" in name)
    waited = next(i for i, name in enumerate(order) if "Wait for the requests in flight" in name)
    assert withdrawn < waited < pruned, order
    tags = json.loads(sh(fleet, "gpu-nv1", "curl -s 127.0.0.1:11434/api/tags"))
    assert [m["name"] for m in tags["models"]] == ["qwen2.5:0.5b"]
    assert {"qwen2.5-0.5b", "gemma3-270m-b"} <= router_models(fleet)

    fourth = fleet.deploy()
    assert fourth["results"]["totals"]["success"] == 0, changed_hosts(fourth)


def router_release(fleet: Fleet) -> str:
    return sh(fleet, "cpu-llama1", "readlink /opt/modelfleet/current")


def test_bad_inventory_stops_before_any_operation(fleet: Fleet) -> None:
    good = fleet.overrides
    fleet.write_data(**good, llama_swap_release_sha256="not-a-sha256")
    try:
        result = run_pyinfra("inventory/local.py", "deploy.py", env=fleet.env, check=False)
    finally:
        fleet.write_data(**good)
    assert result["returncode"] != 0
    assert "the deploy was not started" in result["stderr"]
    assert "host gpu-amd1: key llama_swap_release_sha256" in result["stderr"]
    assert not result.get("results"), "operations ran although the plan was invalid"


def test_failing_router_release_keeps_the_previous_one(fleet: Fleet, tmp_path: Path) -> None:
    live = router_release(fleet)
    # A copy of the project whose router cannot start: a new release id, and a broken one.
    broken = tmp_path / "broken"
    for part in ("modelfleet", "deploy", "roles", "router", "templates", "inventory"):
        # modelfleet/ links the folders next to it: copied as links, it imports the copy.
        shutil.copytree(
            REPO / part, broken / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    for part in ("deploy.py", "pyproject.toml", "README.md"):
        if (REPO / part).exists():
            shutil.copy2(REPO / part, broken / part)
    main = broken / "router" / "__main__.py"
    main.write_text(
        main.read_text().replace("def main(", "def main_ok(")
        + ("\n\ndef main() -> None:\n    raise SystemExit('broken release (rollback test)')\n")
        # A release id no earlier run has built: the wheelhouse cache outlives test runs.
        + f"# rollback test {uuid.uuid4().hex}\n"
    )
    pyinfra = [str(Path(sys.executable).with_name("pyinfra")), "-y", "--json"]
    # --dry builds nothing: the new release's wheelhouse is made only when its upload runs.
    dry = subprocess.run(
        [*pyinfra, "--dry", "inventory/local.py", "deploy.py"],
        cwd=broken,
        env=fleet.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert not wheelhouse_path(broken).exists(), "pyinfra --dry built the router release"
    done = subprocess.run(
        [*pyinfra, "inventory/local.py", "deploy.py"],
        cwd=broken,
        env=fleet.env,
        capture_output=True,
        text=True,
        check=False,
    )
    result = json.loads(done.stdout)["results"]
    assert done.returncode != 0
    assert result["failed_hosts"] == ["cpu-llama1"]
    assert "modelfleet: host cpu-llama1 failed at" in done.stderr
    assert "the service keeps its current release and config" in done.stderr
    # The other hosts ran every operation without an error.
    for op in result["operations"]:
        assert set(op["error"]) <= {"cpu-llama1"}, op
    assert router_release(fleet) == live
    assert "gemma3-270m" in router_models(fleet)
    assert wheelhouse_path(broken).is_file()  # built when the real run uploaded it

    limited = run_pyinfra(
        "inventory/local.py", "deploy.py", env=fleet.env, extra_args=["--limit", "gpu_amd"]
    )
    assert limited["results"]["totals"]["success"] == 0
    touched = {h for op in limited["results"]["operations"] for h in op["no_change"]}
    assert touched == {"gpu-amd1"}

    # --limit router: router.yaml is still rendered from the whole fleet, so nothing changes.
    router_only = run_pyinfra(
        "inventory/local.py", "deploy.py", env=fleet.env, extra_args=["--limit", "router"]
    )
    assert router_only["results"]["totals"]["success"] == 0, changed_hosts(router_only)
    assert {h for op in router_only["results"]["operations"] for h in op["no_change"]} == {
        "cpu-llama1"
    }


def test_an_archive_corrected_under_the_same_version_goes_live(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Another archive of the same Ollama version (a corrected URL and sha256, e.g. the right
    architecture's) is unpacked beside the old one and goes live, with a restart; before, the
    version's directory existed already, so the new archive was downloaded and ignored."""
    fleet.write_data()
    assert fleet.deploy()["results"]["totals"]["error"] == 0
    live = sh(fleet, "gpu-nv1", "readlink /opt/ollama/current")
    pid = sh(fleet, "gpu-nv1", "systemctl show -p MainPID --value ollama-rtx-4090")
    # The same release, its notice file changed: other bytes, the same version.
    served = urllib.request.urlopen(fleet.base_data["ollama_release_url"], timeout=30).read()
    tar = subprocess.run(["zstd", "-d", "-c"], input=served, capture_output=True, check=True)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-x", "-C", str(unpacked)], input=tar.stdout, check=True)
    (unpacked / "lib" / "ollama" / "STANDIN.txt").write_text("corrected archive\n")
    fixed = tmp_path / "files" / "ollama-linux-amd64.tar.zst"
    fixed.parent.mkdir()
    subprocess.run(
        ["tar", "--zstd", "-c", "-f", str(fixed), "-C", str(unpacked), "bin", "lib"], check=True
    )
    sha = hashlib.sha256(fixed.read_bytes()).hexdigest()
    with localstack.serve_files(fixed.parent) as url:
        fleet.write_data(ollama_release_url=f"{url}/{fixed.name}", ollama_release_sha256=sha)
        done = fleet.deploy()
    assert done["results"]["totals"]["error"] == 0, done["stderr"][-3000:]
    now = sh(fleet, "gpu-nv1", "readlink /opt/ollama/current")
    assert now != live and now.endswith(sha[:12]), (live, now)
    assert sh(fleet, "gpu-nv1", "cat /opt/ollama/current/lib/ollama/STANDIN.txt") == (
        "corrected archive"
    )
    assert sh(fleet, "gpu-nv1", "systemctl show -p MainPID --value ollama-rtx-4090") != pid
    fleet.write_data()
    back = fleet.deploy()
    assert back["results"]["totals"]["error"] == 0, back["stderr"][-3000:]
    assert sh(fleet, "gpu-nv1", "readlink /opt/ollama/current") == live

    # ollama_packages: [] leaves apt alone (a host with zstd and no package mirror).
    unpack_tools = "Ollama backend | Tools to unpack the Ollama release"
    assert any(op["name"].startswith(unpack_tools) for op in back["results"]["operations"])
    fleet.write_data(ollama_packages=[])
    without_apt = fleet.deploy()
    assert without_apt["results"]["totals"]["success"] == 0, changed_hosts(without_apt)
    names = [op["name"] for op in without_apt["results"]["operations"]]
    assert not any(name.startswith(unpack_tools) for name in names), names
    fleet.write_data()
