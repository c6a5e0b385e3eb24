#!/usr/bin/env bash
# Run a role's Molecule scenario with the Molecule stack of .venv-molecule, no exports needed:
#   bash deploy/lab/molecule.sh ollama            # = cd roles/ollama && molecule test
#   bash deploy/lab/molecule.sh gpu converge      # any other molecule command
# Molecule runs ansible-config / ansible-playbook from PATH and the podman driver needs the
# containers.podman collection: both come from .venv-molecule (bash deploy/setup.sh --molecule).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=$ROOT/.venv-molecule

if [ $# -lt 1 ] || [ ! -d "roles/$1/molecule" ]; then
    echo "usage: bash deploy/lab/molecule.sh <role> [molecule command, default: test]" >&2
    echo "roles with a scenario: $(cd roles && ls -d */molecule | cut -d/ -f1 | tr '\n' ' ')" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/molecule" ] || [ ! -d "$VENV/collections/ansible_collections/containers/podman" ]; then
    echo "molecule: .venv-molecule is missing; run: bash deploy/setup.sh --molecule" >&2
    exit 2
fi
role=$1
shift
export PATH="$VENV/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$VENV/collections"
cd "roles/$role"
exec molecule "${@:-test}"
