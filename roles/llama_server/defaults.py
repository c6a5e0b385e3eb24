"""Every knob of the llama-server role, with its default. Override any of them in group_data."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # Where the llama-server binary comes from; one of:
    #   a URL + sha256 of the executable, or
    #   a path on the controller (e.g. the cached build of deploy/llama_build.sh), uploaded.
    "llama_server_binary_url": None,
    "llama_server_binary_sha256": None,
    "llama_server_binary_path": None,
    # Binaries go to <root>/releases/<version>/llama-server, <root>/current -> the live one;
    # <version> is the fleet's versions["llama_cpp"] (plus the sha256 prefix, so a rebuilt
    # binary gets a directory of its own).
    "llama_server_root": "/opt/llama-server",
    # Debian packages the binary needs at run time (the cached build links libgomp).
    "llama_server_packages": ["libgomp1"],
    "llama_server_apt_cache_time": 86400,
    # Config directory: the presets file of each instance.
    "llama_server_config_dir": "/etc/llama-server",
    "llama_server_user": "llama-server",
    "llama_server_extra_groups": ["render", "video"],
    # Flags for every llama-server process (threads, batch size ...).
    "llama_server_extra_args": [],
    # Extra environment for every instance's unit.
    "llama_server_extra_env": {},
    # Delete GGUF files in the models directory that no instance on the host uses any more.
    "llama_server_prune_models": False,
    # Seconds a (re)started instance gets to answer /health in the health-check phase.
    "llama_server_health_timeout_s": 120,
}
