"""Verify roles/gpu on the Molecule container: the facts' commands, parsed by
deploy/hardware/parsers.py."""

from modelfleet.deploy.hardware.parsers import parse_lspci, parse_nvidia_smi_csv
from modelfleet.roles.gpu.facts import LSPCI_COMMAND, NVIDIA_SMI_QUERY

testinfra_hosts = ["podman://mf-mol-gpu"]


def test_nvidia_smi_reports_both_gpus(host):
    gpus = parse_nvidia_smi_csv(host.check_output(NVIDIA_SMI_QUERY))
    assert [gpu.name for gpu in gpus] == ["NVIDIA GeForce RTX 4090"] * 2
    assert all(gpu.vram_mb > 20000 for gpu in gpus)


def test_lspci_lists_them_before_any_driver(host):
    devices = parse_lspci(host.check_output(LSPCI_COMMAND))
    assert len([d for d in devices if d.vendor == "nvidia"]) == 2
