"""The nvidia role's facts and operations as data (pyinfra's own fixture format).

One folder per fact or operation under ``facts/`` and ``operations/``; a new case is a new
JSON file. Operation cases name our facts as the fake host keys them: ``facts.CdiDevices``.
"""

from pathlib import Path

from pyinfra.connectors.docker import PodmanConnector
from pyinfra.connectors.local import LocalConnector
from pyinfra.connectors.ssh import SSHConnector
from pyinfra_testing.facts import make_fact_tests
from pyinfra_testing.operations import make_operation_tests

from modelfleet.roles.aptsource import source_line
from modelfleet.roles.nvidia import may_reboot
from modelfleet.roles.rocm import version_path
from modelfleet.roles.system import check_role_keys

HERE = Path(__file__).parent

for folder in sorted((HERE / "facts").iterdir()):
    locals()[f"TestFact_{folder.name}"] = make_fact_tests("modelfleet.roles", folder.name, folder)
for folder in sorted((HERE / "operations").iterdir()):
    locals()[f"TestOp_{folder.name}"] = make_operation_tests(
        "modelfleet.roles", folder.name, folder
    )


def test_rocm_version_path_drops_a_trailing_zero():
    assert [version_path(v) for v in ("6.4.1", "7.1.0", "6.4", "7.0.10")] == [
        "6.4.1",
        "7.1",
        "6.4",
        "7.0.10",
    ]


def test_source_lines_flat_and_suite():
    assert (
        source_line("https://example.test/cuda/", "/etc/apt/keyrings/c.asc")
        == "deb [signed-by=/etc/apt/keyrings/c.asc] https://example.test/cuda/ /"
    )
    assert (
        source_line("https://example.test/rocm", "/k.asc", suite="jammy", components="main")
        == "deb [signed-by=/k.asc] https://example.test/rocm jammy main"
    )


def test_reboot_only_when_allowed_and_never_on_local():
    assert may_reboot(True, SSHConnector)
    assert may_reboot(True, PodmanConnector)
    assert not may_reboot(False, SSHConnector)
    assert not may_reboot(True, LocalConnector)


def test_mistyped_role_keys_are_named_with_a_suggestion():
    data = {
        "nvidia_toolkit": False,
        "nvidia_driver_branch": "550",
        "rocm_packages": "rocm-hip-runtime",
        "container_runtime_engin": "docker",
        "ollama_whatever": 1,
    }
    assert check_role_keys(data, "inv.py: host a") == [
        "inv.py: host a: key nvidia_toolkit: not a knob of the nvidia role (closest known key: "
        "nvidia_toolkit_version); its knobs: roles/nvidia/defaults.py",
        "inv.py: host a: key rocm_packages: expected a list, got 'rocm-hip-runtime'",
        "inv.py: host a: key container_runtime_engin: not a knob of the container_runtime role "
        "(closest known key: container_runtime_engine); its knobs: "
        "roles/container_runtime/defaults.py",
    ]
