"""The local container fleet itself: up, systemd, emulated GPUs, inventory, teardown."""

from __future__ import annotations

import json
import subprocess

import pytest

from modelfleet.deploy.inventory import load_fleet
from modelfleet.deploy.lab import localfleet
from modelfleet.deploy.lab.localfleet import ContainerHost, LocalFleetError


def sh(container: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "exec", container, "sh", "-c", command],
        capture_output=True,
        text=True,
        check=False,
    )


def test_up_runs_systemd_and_emulates_gpus(fleet_factory):
    fleet = fleet_factory(
        [
            ContainerHost("nv", gpu="rtx4090x2"),
            ContainerHost("amd", gpu="mi300x"),
            ContainerHost("bare", gpu="rtx4090x2", gpu_driver=False, secure_boot=True),
        ]
    )
    hosts = fleet.by_name
    assert set(hosts) == {"nv", "amd", "bare"}
    for host in fleet.hosts:
        assert host.address.startswith("10.88.")
        assert sh(host.container, "systemctl is-system-running").stdout.strip() == "running"
        assert sh(host.container, "hostname").stdout.strip() == host.name

    nv = hosts["nv"].container
    query = "nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits"
    assert sh(nv, query).stdout.splitlines() == [
        "0, NVIDIA GeForce RTX 4090, 24564",
        "1, NVIDIA GeForce RTX 4090, 24564",
    ]
    assert sh(nv, "test -c /dev/nvidia1 && test -c /dev/nvidiactl").returncode == 0
    assert sh(nv, "command -v amd-smi").returncode != 0

    amd = hosts["amd"].container
    static = json.loads(sh(amd, "amd-smi static --json").stdout)
    assert [(g["asic"]["market_name"], g["vram"]["size"]["value"]) for g in static] == [
        ("AMD Instinct MI300X", 196592)
    ]
    assert "1002:74a1" in sh(amd, "lspci -nn").stdout
    assert sh(amd, "test -c /dev/kfd && test -c /dev/dri/renderD128").returncode == 0

    # A host whose driver is not installed yet: lspci sees the GPUs, nvidia-smi is absent.
    bare = hosts["bare"].container
    assert sh(bare, "lspci -mm -nn -d 10de:").stdout.count("GeForce RTX 4090") == 2
    assert sh(bare, "command -v nvidia-smi").returncode != 0
    assert sh(bare, "mokutil --sb-state").stdout.strip() == "SecureBoot enabled"


def test_up_is_repeatable_and_down_leaves_nothing(fleet_factory):
    fleet = fleet_factory([ContainerHost("one", gpu="cpu")])
    again = localfleet.up([ContainerHost("one", gpu="cpu")], fleet=fleet.name)
    assert [(h.container, h.address) for h in again] == [
        (h.container, h.address) for h in fleet.hosts
    ]

    removed = localfleet.down(fleet.name)
    assert removed == [fleet.hosts[0].container]
    left = subprocess.run(
        ["podman", "ps", "-a", "--filter", f"label=modelfleet.fleet={fleet.name}", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == ""
    assert localfleet.status(fleet.name) == []


def test_bad_specs_are_refused_before_anything_starts(fleet_available):
    with pytest.raises(LocalFleetError, match=r"host a: gpu profile 'rtx9090' is not in"):
        localfleet.up([ContainerHost("a", gpu="rtx9090")], fleet="mftbad")
    with pytest.raises(LocalFleetError, match=r"host a: listed twice"):
        localfleet.up([ContainerHost("a"), ContainerHost("a")], fleet="mftbad")
    assert localfleet.status("mftbad") == []


def test_missing_image_names_the_fix(fleet_available):
    with pytest.raises(LocalFleetError, match=r"deploy/setup.sh --all"):
        localfleet.up([ContainerHost("a")], fleet="mftbad", image="localhost/no-such:image")


def test_inventory_points_at_the_running_fleet(local_fleet, monkeypatch):
    monkeypatch.setenv("MODELFLEET_FLEET", local_fleet.name)
    fleet = load_fleet("inventory/local.py")
    by_name = {host.name: host for host in fleet.hosts}
    assert {name: host.address for name, host in by_name.items()} == {
        host.name: host.address for host in local_fleet.hosts
    }
    kinds = {name: host.backend.kind if host.backend else None for name, host in by_name.items()}
    assert kinds["gpu-nv1"] == "ollama"
    assert kinds["gpu-amd1"] == "llama-swap"
    assert kinds["cpu-llama1"] == "llama-server"
    assert [host.name for host in fleet.router_hosts] == ["cpu-llama1"]


def test_pyinfra_reaches_every_host_over_ssh(local_fleet, run_pyinfra):
    # The GPU count each host reports through pyinfra: 2 (RTX 4090 x2), 0, 0.
    result = run_pyinfra(
        "inventory/local.py",
        "test -c /dev/nvidia1 || test -c /dev/kfd || grep -q cpu /etc/modelfleet/fakegpu.json",
        env=local_fleet.env,
        extra_args=(),
        command=True,
    )
    operation = result["results"]["operations"][0]
    assert sorted(operation["success"]) == ["cpu-llama1", "gpu-amd1", "gpu-nv1"]
    assert result["results"]["failed_hosts"] == []


def test_gpu_detection_reads_the_emulated_gpus(local_fleet):
    """The planner's own detection fact (roles/gpu) sees what the profiles describe."""
    from modelfleet.roles.gpu.facts import HostHardwareFact

    detected = {}
    for host in local_fleet.hosts:
        fact = HostHardwareFact()
        output = sh(host.container, fact.command()).stdout.splitlines()
        hardware = fact.process(output)
        detected[host.name] = [(gpu.vendor, gpu.name, gpu.vram_mb) for gpu in hardware.gpus]
    assert detected == {
        "gpu-nv1": [("nvidia", "NVIDIA GeForce RTX 4090", 24564)] * 2,
        "gpu-amd1": [("amd", "AMD Instinct MI300X", 196592)],
        "cpu-llama1": [],
    }


def test_up_refuses_to_reuse_a_host_started_with_other_gpus(fleet_factory):
    fleet = fleet_factory([ContainerHost("one", gpu="rtx4090x2")])
    with pytest.raises(LocalFleetError, match=r"host one: container .* other GPU emulation"):
        localfleet.up([ContainerHost("one", gpu="mi300x")], fleet=fleet.name)
    assert [h.container for h in localfleet.status(fleet.name)] == [fleet.hosts[0].container]


def test_up_refuses_a_host_that_would_not_let_this_runs_ssh_key_in(
    fleet_factory, tmp_path, monkeypatch
):
    """Another MODELFLEET_CACHE (or a key made again) would otherwise end in pyinfra's bare
    "Authentication failed" for every host."""
    fleet = fleet_factory([ContainerHost("one")])
    monkeypatch.setattr(localfleet, "SSH_KEY", tmp_path / "ssh" / "id_ed25519")
    with pytest.raises(LocalFleetError, match=r"host one: .* another ssh key .*MODELFLEET_CACHE"):
        localfleet.up([ContainerHost("one")], fleet=fleet.name)
    assert [h.container for h in localfleet.status(fleet.name)] == [fleet.hosts[0].container]
