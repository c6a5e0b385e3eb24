"""Verify roles/router on the Molecule container with the fleet's testinfra checks.

The same tests as ``pytest tests/infra``, against the inventory the converge wrote.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[5]
sys.path.insert(0, str(REPO))
os.environ.setdefault(
    "MODELFLEET_INVENTORY", str(REPO / ".fleet" / "molecule-router" / "inventory.py")
)

from tests.infra.conftest import deployed, node, node_data  # noqa: E402,F401 (fixtures)
from tests.infra.test_fleet_hosts import *  # noqa: E402,F403

testinfra_hosts = ["podman://mf-mol-router"]
