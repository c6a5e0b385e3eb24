#!/usr/bin/env bash
# The Molecule stack for the role scenarios, in its own venv (.venv-molecule), kept apart from
# the project's .venv. Galaxy is not reachable here, so the containers.podman collection that
# Molecule's podman driver needs is extracted from the PyPI `ansible` wheel (1 MB of 473 MB).
#   bash deploy/lab/molecule-venv.sh      then:  bash deploy/lab/molecule.sh nvidia   (molecule test there)
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=.venv-molecule
ANSIBLE_WHEEL_VERSION=${MODELFLEET_ANSIBLE_VERSION:-12.3.0}
COLLECTIONS=$VENV/collections
say() { echo "molecule-venv: $*"; }

# pip, not python: an interrupted venv leaves bin/python without pip (venv again completes it).
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c 'import molecule, molecule_plugins, testinfra, pyinfra' 2>/dev/null; then
    say "pip install molecule, molecule-plugins[podman], ansible-core, pytest-testinfra (about 20 s)"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q molecule 'molecule-plugins[podman]' ansible-core pytest-testinfra
    # The roles under test import the project (pyinfra, pydantic, jinja2 ...).
    "$VENV/bin/pip" install -q -e .
fi

if [ ! -d "$COLLECTIONS/ansible_collections/containers/podman" ]; then
    say "extracting containers.podman from the ansible $ANSIBLE_WHEEL_VERSION wheel (about 30 s download)"
    wheels=$(mktemp -d)
    trap 'rm -rf "$wheels"' EXIT
    "$VENV/bin/pip" download -q --no-deps "ansible==$ANSIBLE_WHEEL_VERSION" -d "$wheels"
    "$VENV/bin/python" - "$wheels" "$COLLECTIONS.partial" <<'PY'
import glob, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(f"{sys.argv[1]}/ansible-*.whl")[0])
prefix = "ansible_collections/containers/podman/"
wheel.extractall(sys.argv[2], [n for n in wheel.namelist() if n.startswith(prefix)])
PY
    rm -rf "$COLLECTIONS"
    mv "$COLLECTIONS.partial" "$COLLECTIONS"
fi
say "ready: bash deploy/lab/molecule.sh <role> runs molecule test in roles/<role> with these tools"
