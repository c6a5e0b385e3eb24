"""The ``modelfleet`` CLI: plan and render on inventory/example.py, errors, and detect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from modelfleet.deploy.cli import main
from modelfleet.router.config import load_config

EXAMPLE = "inventory/example.py"


def test_plan_prints_every_host_and_instance() -> None:
    result = CliRunner().invoke(main, ["plan", EXAMPLE])
    assert result.exit_code == 0, result.output
    for expected in (
        "fleet example (inventory/example.py): 5 hosts, 5 backend instances, 7 models",
        "gpu-nv-01-rtx-4090  ollama (native, cuda)  port 11434  2x NVIDIA GeForce RTX 4090",
        "gpu-nv-01-rtx-a4000  ollama (native, cuda)  port 11435  1x NVIDIA RTX A4000",
        "gpu-amd-01-mi300x  llama-swap (native, rocm)  port 8080  1x AMD Instinct MI300X",
        "gpu-amd-02-rx-7900-xtx  ollama (container, rocm)",
        "cpu-01-cpu  llama-server (native, cpu)  port 8080  CPU",
        "router-01 (router-01.lan) | router",
    ):
        assert expected in result.output


def test_plan_json_has_vram_use_per_instance() -> None:
    result = CliRunner().invoke(main, ["plan", EXAMPLE, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    instances = [inst for host in data["hosts"] for inst in host["instances"]]
    assert len(instances) == 5
    for inst in instances:
        assert 0 <= inst["vram_used_mb"] <= inst["capacity_mb"]
        assert inst["vram_free_mb"] == inst["capacity_mb"] - inst["vram_used_mb"]


def test_render_writes_files_that_parse(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", EXAMPLE, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "gpu-nv-01/etc/systemd/system/ollama-rtx-4090.service").is_file()
    swap = yaml.safe_load((out / "gpu-amd-01/etc/llama-swap/gpu-amd-01-mi300x.yaml").read_text())
    assert "llama3.3-70b" in swap["models"]
    assert (out / "cpu-01/etc/llama-server/cpu-01-cpu.ini").is_file()
    assert (out / "cpu-01/etc/systemd/system/llama-server-cpu.service").is_file()
    config = load_config(out / "router-01/etc/modelfleet/router.yaml")
    assert len(config.backends) == 5
    assert (out / "router-01/etc/systemd/system/modelfleet-router.socket").is_file()
    assert not (out / "router.yaml").exists()  # one router.yaml per router host, nowhere else


def test_render_names_a_mistyped_role_knob(write_inventory, tmp_path: Path) -> None:
    path = write_inventory(
        'router = [("r1", {"router_listn": "0.0.0.0:80"})]\n'
        'gpu = [("g1", {"backend": "ollama", "gpus": [], "ram_mb": 8192})]\n'
    )
    result = CliRunner().invoke(main, ["render", path, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"{path}: host r1: key router_listn: not a knob of the router role" in result.output
    assert "closest known key: router_user" in result.output


def test_too_big_model_fails_naming_model_and_largest_host(write_inventory) -> None:
    path = write_inventory(
        """
        gpu = [("small-box", {"gpus": [{"name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564}]}),
               ("big-box", {"gpus": [{"name": "AMD Instinct MI300X", "vram_mb": 196592}]})]
        """,
        {
            "gpu": 'backend = "ollama"\n',
            "all": """
                model_catalog = {"llama3.1-405b": {
                    "ollama": "llama3.1:405b", "size_mb": 232000, "kv_mb_per_1k_ctx": 504,
                    "ctx": 8192, "groups": ["gpu"]}}
            """,
        },
    )
    result = CliRunner().invoke(main, ["plan", path])
    assert result.exit_code == 1
    assert "model llama3.1-405b fits on none of its hosts" in result.output
    assert "on host big-box it needs 236032 MB" in result.output
    assert "195568 MB (196592 MB VRAM of 1x AMD Instinct MI300X minus 1024 MB headroom)" in (
        result.output
    )


def test_bad_inventory_names_file_host_and_key(write_inventory) -> None:
    path = write_inventory('gpu = [("g1", {"backend": "ollama", "gpus": "two"})]\n')
    result = CliRunner().invoke(main, ["plan", path])
    assert result.exit_code == 1
    assert f"{path}: host g1: key gpus: expected a list of GPUs" in result.output


def test_plan_without_gpus_override_says_how_to_fix(write_inventory) -> None:
    path = write_inventory('gpu = [("g1", {"backend": "ollama"})]\n')
    result = CliRunner().invoke(main, ["plan", path])
    assert result.exit_code == 1
    assert "host g1: key gpus: not set" in result.output and "--detect" in result.output


def test_detect_reports_a_failing_host_and_still_prints_the_others(write_inventory) -> None:
    # Runs in a subprocess: pyinfra's API needs gevent's monkey-patching, kept out of pytest.
    path = write_inventory(
        """
        local = ["@local"]
        unreachable = [("gpu-down", {"ssh_hostname": "127.0.0.1", "ssh_port": 9,
                                     "ssh_connect_retries": 0})]
        """
    )
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet.deploy.cli", "detect", path, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["@local"]["cpu_cores"] >= 1 and data["@local"]["ram_mb"] > 0
    assert "error" in data["gpu-down"]
    assert "detection failed on 1 host(s): gpu-down" in result.stderr


def test_a_second_render_removes_what_the_fleet_no_longer_has(write_inventory, tmp_path) -> None:
    """For review or GitOps, the folder holds what the fleet is now: files an earlier render
    wrote for a host or instance that is gone are removed; files it did not write stay."""
    catalog = (
        'model_catalog = {"m": {"ollama": "m:1b", "size_mb": 100, "kv_mb_per_1k_ctx": 1, '
        '"groups": ["gpu"]}}'
    )
    host = '("{0}", {{"backend": "ollama", "gpus": [], "ram_mb": 8192}})'
    two = write_inventory(f"gpu = [{host.format('a')}, {host.format('b')}]\n", {"all": catalog})
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("not ours\n")
    assert CliRunner().invoke(main, ["render", two, "--out", str(out)]).exit_code == 0
    assert (out / "b/etc/systemd/system/ollama-cpu.service").is_file()
    one = write_inventory(f"gpu = [{host.format('a')}]\n", {"all": catalog}, name="one")
    result = CliRunner().invoke(main, ["render", one, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "removed 2 files of an earlier render: b/etc/ollama/ollama-cpu.env" in result.output
    assert not (out / "b").exists() and (out / "a/etc/ollama/ollama-cpu.env").is_file()
    assert (out / "README.md").read_text() == "not ours\n"
