"""Verify roles/rocm on the Molecule container (testinfra, podman backend)."""

testinfra_hosts = ["podman://mf-mol-rocm"]


def test_rocm_tools_answer(host):
    assert "AMD Instinct MI300X" in host.check_output("amd-smi static --json")
    assert host.package("amdgpu-dkms").is_installed


def test_device_rules_and_groups(host):
    rules = host.file("/etc/udev/rules.d/70-modelfleet-amdgpu.rules").content_string
    assert 'KERNEL=="kfd", GROUP="render", MODE="0660"' in rules
    assert host.group("render").exists and host.group("video").exists


def test_repositories_pinned_and_signed(host):
    assert "Pin-Priority: 600" in host.file("/etc/apt/preferences.d/rocm-pin-600").content_string
    source = host.file("/etc/apt/sources.list.d/rocm.list").content_string
    assert source.startswith("deb [signed-by=/etc/apt/keyrings/rocm.asc] ")
