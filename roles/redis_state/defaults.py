"""Every knob of the redis_state role, with its default. Set them in group_data/all.py: the
router hosts read the same knobs to reach Redis (port, timeout, password file)."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # Port Redis listens on (on the host's fleet-network address and on loopback).
    "redis_state_port": 6379,
    # The password. None: generated once on the controller and kept there in a 0600 file
    # (roles/secrets.py); set it (e.g. from a vault lookup) to manage it yourself.
    "redis_state_password": None,
    # Memory cap for the soft state; past it Redis refuses writes and the routers carry on
    # without it (degraded mode), as when Redis is unreachable.
    "redis_state_maxmemory_mb": 256,
    # What the routers wait at most for one Redis call (router.yaml shared_state.timeout_ms).
    "redis_state_timeout_ms": 50,
    # On router hosts: the password file the router reads (0600, owned by router_user).
    "redis_state_password_file": "/etc/modelfleet/redis.secret",
    # On the Redis host: the config modelfleet owns (Debian's /etc/redis/redis.conf is left
    # as shipped and unused), and the 0600 file with `requirepass` that it includes.
    "redis_state_config": "/etc/redis/modelfleet.conf",
    "redis_state_secret_config": "/etc/redis/modelfleet-secret.conf",
    # Extra [Service] settings for Debian's redis-server.service, in modelfleet's drop-in.
    # Containers without user namespaces need {"PrivateUsers": "false"} (the unit's
    # PrivateUsers=true then fails with status 217/USER); a real host keeps Debian's hardening.
    "redis_state_service_overrides": {},
    # Debian packages (bookworm: redis-server 7.0).
    "redis_state_packages": ["redis-server"],
    # apt cache age (seconds) that is fresh enough to skip `apt-get update`.
    "redis_state_apt_cache_time": 86400,
}
