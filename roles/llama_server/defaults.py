"""Every knob of the llama-server role, with its default. Override any of them in group_data."""

from __future__ import annotations

from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any

from modelfleet.roles.checks import need_sha256

DEFAULTS: dict[str, Any] = {
    # Where the llama-server binary comes from; one of:
    #   a URL + sha256 of the executable, or
    #   a path on the controller (e.g. the cached build of deploy/lab/llama_build.sh), uploaded.
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


def binary_path(values: Mapping[str, Any]) -> str:
    """Where units and llama-swap configs find the installed binary."""
    return f"{values['llama_server_root']}/current/llama-server"


def check(values: Mapping[str, Any], installs: Set[str]) -> list[str]:
    """The binary source (llama-server and llama-swap hosts both need it): a file on the
    controller, or a URL with its sha256."""
    if not installs:
        return []
    path, url = values.get("llama_server_binary_path"), values.get("llama_server_binary_url")
    if path:
        if not Path(str(path)).is_file():
            return [
                f"key llama_server_binary_path: {path} is not a file on the controller "
                "(build it with: bash deploy/lab/llama_build.sh)"
            ]
        return []
    if url:
        return need_sha256(
            values, "llama_server_binary_sha256", "the llama-server binary is checked against it"
        )
    return [
        "key llama_server_binary_path: not set, and no llama_server_binary_url either; "
        "llama-swap and llama-server hosts need the llama-server binary"
    ]
