"""Verify roles/nvidia on the Molecule container (testinfra, podman backend)."""

testinfra_hosts = ["podman://mf-mol-nvidia"]


def test_driver_answers_with_persistence_on(host):
    out = host.check_output(
        "nvidia-smi --query-gpu=driver_version,persistence_mode --format=csv,noheader"
    )
    assert out.splitlines() == ["550.54.15, Enabled", "550.54.15, Enabled"]


def test_nouveau_blacklisted(host):
    assert "blacklist nouveau" in host.file("/etc/modprobe.d/blacklist-nouveau.conf").content_string


def test_persistenced_enabled_and_running(host):
    service = host.service("nvidia-persistenced")
    assert service.is_enabled and service.is_running


def test_toolkit_installed(host):
    assert host.package("nvidia-container-toolkit").is_installed
    assert host.file("/etc/apt/keyrings/nvidia-container-toolkit.asc").exists
