"""The system roles alone, by group: what the fleet tests and Molecule scenarios converge.

pyinfra -y --json INVENTORY tests/fleet/deploys/system_roles.py
"""

from pyinfra import host

from modelfleet.roles import system
from modelfleet.roles.aptsource import signed_repo

# Tests only: the stand-in "distribution" repository that has the running kernel's headers
# (a real Debian host gets them from its own apt sources).
if host.data.get("standin_distribution_repo_url"):
    url = host.data.standin_distribution_repo_url
    signed_repo("standin-distribution", url=url, key_url=f"{url}/key.asc")
system.drivers_and_runtime()
