"""Every knob of the keepalived role (the router VIP), with its default."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # VRRP router id (1-255): unique per VRRP group on the network segment.
    "keepalived_virtual_router_id": 51,
    # Interface that carries the host's fleet address and the VIP. None: the one that holds
    # the host's `address` (asked on the host when the deploy plans).
    "keepalived_interface": None,
    # VRRP priority. None: 150 - 10 x the host's position in the router group (first router
    # starts as MASTER). Every instance runs `nopreempt`: a recovered router does not take the
    # VIP back, so a flapping replica causes no second failover.
    "keepalived_priority": None,
    # VRRP password (PASS auth, at most 8 characters; it only keeps other VRRP groups out,
    # VRRP carries it in clear). None: generated once on the controller (roles/secrets.py).
    "keepalived_auth_pass": None,
    # Seconds between VRRP adverts.
    "keepalived_advert_int_s": 1,
    # The track script asks the local router's /readyz every interval; `fall` failures in a
    # row move the VIP away, `rise` successes make the host eligible again.
    "keepalived_check_interval_s": 1,
    "keepalived_check_timeout_s": 1,
    "keepalived_check_fall": 2,
    "keepalived_check_rise": 2,
    # Files modelfleet owns; the auth file (0600 root) is included from the config.
    "keepalived_config": "/etc/keepalived/keepalived.conf",
    "keepalived_auth_config": "/etc/keepalived/modelfleet-auth.conf",
    # Debian packages.
    "keepalived_packages": ["keepalived"],
    # apt cache age (seconds) that is fresh enough to skip `apt-get update`.
    "keepalived_apt_cache_time": 86400,
}
