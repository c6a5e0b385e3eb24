"""Every knob of the router role, with its default. Override any of them in group_data."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # Where releases live: <root>/releases/<release id>/ (a venv), <root>/current -> the live one.
    "router_root": "/opt/modelfleet",
    # How many releases to keep on disk, the live one included (the rest are removed).
    "router_keep_releases": 3,
    # System user the router runs as (no shell, no home).
    "router_user": "modelfleet",
    # Config directory (router.yaml goes to RenderSettings.router_config_path, 0640
    # root:<router_user>; the admin token to the fleet's router.admin_token_file, 0600 root).
    "router_config_dir": "/etc/modelfleet",
    # systemd unit name of the router.
    "router_service": "modelfleet-router",
    # The admin token itself. None: one is generated on the host the first time and kept; set it
    # (e.g. from a vault lookup in group_data) to make every router host share one token.
    "router_admin_token": None,
    # Port a new release is tried on before it replaces the running one.
    "router_side_port": 18434,
    # Seconds a new release gets to answer /readyz (on the side port, then on the real port).
    "router_health_timeout_s": 60,
    # Seconds a stopping router (a new release taking over) lets its requests in flight finish.
    "router_shutdown_timeout_s": 60,
    # Debian packages the venv needs.
    "router_packages": ["python3-venv"],
    # apt cache age (seconds) that is fresh enough to skip `apt-get update`.
    "router_apt_cache_time": 86400,
}
