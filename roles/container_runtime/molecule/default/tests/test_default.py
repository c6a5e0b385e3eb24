"""Verify roles/container_runtime on the Molecule container (testinfra, podman backend)."""

testinfra_hosts = ["podman://mf-mol-container-runtime"]


def test_podman_installed(host):
    assert host.run("podman --version").rc == 0


def test_cdi_spec_lists_every_gpu(host):
    devices = host.check_output("nvidia-ctk cdi list").splitlines()[1:]
    assert "nvidia.com/gpu=all" in devices
    assert {"nvidia.com/gpu=0", "nvidia.com/gpu=1"} <= set(devices)
