"""Set-up scripts run a second time after an interrupted first run (no root, no network).

Each test runs a script, or functions cut out of it, in a temporary directory with stub
commands first on PATH (python3, pip, podman, debootstrap) that record their arguments, so
nothing is installed, built or downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "deploy" / "setup.sh"
HOSTIMAGE = REPO / "deploy" / "lab" / "hostimage.sh"
MOLECULE_VENV = REPO / "deploy" / "lab" / "molecule-venv.sh"


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _bash_functions(script: Path, *names: str) -> str:
    """The source of the named top-level functions of ``script``."""
    text = script.read_text()
    parts = []
    for name in names:
        found = re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", text, re.MULTILINE | re.DOTALL)
        assert found, f"{name}() not found in {script}"
        parts.append(found.group(0))
    return "\n".join(parts)


def _run(command: list[str], cwd: Path, stubs: Path, log: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "LOG": str(log)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


PIP_STUB = '#!/bin/sh\necho "pip $*" >>"$LOG"\n'
# python3 -m venv DIR: adds bin/pip (as venv does on an existing folder); any other call passes.
PYTHON3_STUB = f"""#!/bin/sh
echo "python3 $*" >>"$LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then
    mkdir -p "$3/bin"
    printf '%s' '{PIP_STUB}' >"$3/bin/pip"
    chmod +x "$3/bin/pip"
fi
exit 0
"""


def _half_venv(venv: Path, python_rc: int = 0) -> None:
    """What an interrupted ``python3 -m venv`` leaves: bin/python, no pip."""
    _executable(venv / "bin" / "python", f"#!/bin/sh\nexit {python_rc}\n")


def test_setup_python_completes_a_venv_left_without_pip(tmp_path: Path) -> None:
    stubs, work, log = tmp_path / "bin", tmp_path / "work", tmp_path / "log"
    _executable(stubs / "python3", PYTHON3_STUB)
    _half_venv(work / ".venv")
    fragment = _bash_functions(SETUP, "apt_install", "setup_python")
    result = _run(["bash", "-c", f"set -euo pipefail\n{fragment}\nsetup_python"], work, stubs, log)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert "python3 -m venv .venv" in calls
    assert "pip install -q -e .[test]" in calls


def test_setup_python_keeps_a_complete_venv(tmp_path: Path) -> None:
    stubs, work, log = tmp_path / "bin", tmp_path / "work", tmp_path / "log"
    _executable(stubs / "python3", PYTHON3_STUB)
    _half_venv(work / ".venv")
    _executable(work / ".venv" / "bin" / "pip", PIP_STUB)
    fragment = _bash_functions(SETUP, "apt_install", "setup_python")
    result = _run(["bash", "-c", f"set -euo pipefail\n{fragment}\nsetup_python"], work, stubs, log)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert not [call for call in calls if "-m venv" in call]
    assert "pip install -q -e .[test]" in calls


def test_molecule_venv_completes_a_venv_left_without_pip(tmp_path: Path) -> None:
    stubs, work, log = tmp_path / "bin", tmp_path / "work", tmp_path / "log"
    _executable(stubs / "python3", PYTHON3_STUB)
    script = work / "deploy" / "lab" / "molecule-venv.sh"
    script.parent.mkdir(parents=True)
    shutil.copy(MOLECULE_VENV, script)  # it works in the folder two levels above itself
    venv = work / ".venv-molecule"
    _half_venv(venv, python_rc=1)  # 1: `import molecule` fails, so it installs
    (venv / "collections" / "ansible_collections" / "containers" / "podman").mkdir(parents=True)
    result = _run(["bash", str(script)], work, stubs, log)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert "python3 -m venv .venv-molecule" in calls
    assert "pip install -q -e ." in calls


# podman save -o FILE refuses a FILE that is not empty, as containers/image's docker-archive
# writer does ("docker-archive doesn't support modifying existing images").
PODMAN_STUB = """#!/bin/sh
echo "podman $*" >>"$LOG"
case "$1" in
import) cat >/dev/null ;;
save)
    out=""
    while [ $# -gt 0 ]; do
        if [ "$1" = -o ]; then out=$2; shift; fi
        shift
    done
    if [ -s "$out" ]; then
        echo "Error: docker-archive doesn't support modifying existing images" >&2
        exit 125
    fi
    echo saved >"$out" ;;
esac
exit 0
"""
DEBOOTSTRAP_STUB = '#!/bin/sh\nmkdir -p "$4/etc" && echo 12.11 >"$4/etc/debian_version"\n'


def _build_image(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    stubs, cache, log = tmp_path / "bin", tmp_path / "cache", tmp_path / "log"
    _executable(stubs / "podman", PODMAN_STUB)
    _executable(stubs / "debootstrap", DEBOOTSTRAP_STUB)
    text = HOSTIMAGE.read_text()
    assert text.rstrip().endswith('main "$@"')
    definitions = text.rstrip().removesuffix('main "$@"')  # variables and functions only
    env_cache = f"MODELFLEET_CACHE={cache}\n"
    result = _run(["bash", "-c", f"{env_cache}{definitions}\nbuild_image"], tmp_path, stubs, log)
    return result, cache / "modelfleet-host-bookworm-r1.tar"


def test_host_image_build_writes_the_tarball(tmp_path: Path) -> None:
    result, tarball = _build_image(tmp_path)
    assert result.returncode == 0, result.stderr
    assert tarball.read_text() == "saved\n"
    assert not tarball.with_name(tarball.name + ".partial").exists()


def test_host_image_build_replaces_the_leftover_of_an_interrupted_save(tmp_path: Path) -> None:
    partial = tmp_path / "cache" / "modelfleet-host-bookworm-r1.tar.partial"
    partial.parent.mkdir(parents=True)
    partial.write_text("first half of an interrupted podman save")
    result, tarball = _build_image(tmp_path)
    assert result.returncode == 0, result.stderr
    assert tarball.read_text() == "saved\n"
    assert not partial.exists()
