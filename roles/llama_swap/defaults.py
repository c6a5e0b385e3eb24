"""Every knob of the llama-swap role, with its default. Override any of them in group_data."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from modelfleet.roles.checks import need_sha256
from modelfleet.roles.llama_server.defaults import DEFAULTS as LLAMA_SERVER_DEFAULTS
from modelfleet.roles.llama_server.defaults import check as check_llama_server

# llama-swap starts every model with llama-server: its binary source and location are the
# llama_server role's knobs (llama_server_binary_url/_sha256/_path, llama_server_root).
BINARY_KEYS = ("llama_server_binary_url", "llama_server_binary_sha256", "llama_server_binary_path")

DEFAULTS: dict[str, Any] = {
    **{
        key: LLAMA_SERVER_DEFAULTS[key]
        for key in (
            *BINARY_KEYS,
            "llama_server_root",
            "llama_server_packages",
            "llama_server_apt_cache_time",
        )
    },
    # URL of the pinned release archive; {version} is the fleet's versions["llama_swap"]
    # (e.g. "v247"), {number} the same without the leading "v".
    "llama_swap_release_url": (
        "https://github.com/mostlygeek/llama-swap/releases/download/{version}/"
        "llama-swap_{number}_linux_amd64.tar.gz"
    ),
    # sha256 of that archive. Required: the deploy refuses to start without it.
    "llama_swap_release_sha256": None,
    # Releases unpack to <root>/releases/<version>-<sha12>/ (the archive's sha256 prefix) and
    # <root>/current points at the live one.
    "llama_swap_root": "/opt/llama-swap",
    # Config directory: one <instance>.yaml per instance (rendered from the plan).
    "llama_swap_config_dir": "/etc/llama-swap",
    # System user the instances run as (and that owns the models directory).
    "llama_swap_user": "llama-swap",
    "llama_swap_extra_groups": ["render", "video"],
    # Extra environment for every instance's unit, e.g. stand-in knobs in tests.
    "llama_swap_extra_env": {},
    # Delete GGUF files in the models directory that no instance on the host uses any more.
    "llama_swap_prune_models": False,
    # Seconds a (re)started instance gets to answer /health in the health-check phase.
    "llama_swap_health_timeout_s": 60,
    # Seconds llama-swap waits for a model's llama-server to come up (config healthCheckTimeout).
    "llama_swap_health_check_timeout_s": 120,
}


def check(values: Mapping[str, Any], installs: Set[str]) -> list[str]:
    """The release sha256, and the llama-server binary every model is started with."""
    if not installs:
        return []
    return [
        *need_sha256(
            values,
            "llama_swap_release_sha256",
            "the llama-swap release archive is checked against it",
        ),
        *check_llama_server(values, installs),
    ]
