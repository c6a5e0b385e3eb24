"""Every knob of the Ollama role, with its default. Override any of them in group_data."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from modelfleet.roles.checks import need_sha256

# Where a native release is linked, and what its units run.
BINARY_LINK = "/usr/local/bin/ollama"

DEFAULTS: dict[str, Any] = {
    # --- native install: a pinned release archive, checked by sha256 -------------------------
    # URL of the release archive; {version} is the fleet's versions["ollama"]. Ollama >= 0.14.0
    # ships .tar.zst (older releases: .tgz; tar reads both).
    "ollama_release_url": (
        "https://github.com/ollama/ollama/releases/download/v{version}/ollama-linux-amd64.tar.zst"
    ),
    # sha256 of that archive. Required for native installs: copy it from the release page
    # (sha256sum.txt); the deploy refuses to start without it.
    "ollama_release_sha256": None,
    # Debian packages a native install needs to unpack the release (tar calls zstd), installed
    # with an apt update at most every ollama_apt_cache_time seconds. [] skips apt altogether
    # (a host with zstd already and no package mirror).
    "ollama_packages": ["zstd"],
    "ollama_apt_cache_time": 86400,
    # Releases unpack to <root>/releases/<version>-<sha12>/ (the archive's sha256 prefix);
    # <root>/current points at the live one and /usr/local/bin/ollama at
    # <root>/current/bin/ollama.
    "ollama_root": "/opt/ollama",
    # System user and group the instances run as; added to these groups when they exist
    # (GPU device access on AMD hosts).
    "ollama_user": "ollama",
    "ollama_extra_groups": ["render", "video"],
    # --- container install: one podman container per instance ----------------------------------
    # The images come from the fleet's versions["cuda_image"] / versions["rocm_image"].
    # Extra `podman run` arguments for every instance container.
    "ollama_container_args": [],
    # --- every install ----------------------------------------------------------------------------
    # Extra environment for every instance, on top of the plan's (OLLAMA_HOST, OLLAMA_MODELS,
    # OLLAMA_KEEP_ALIVE, OLLAMA_MAX_LOADED_MODELS, OLLAMA_NUM_PARALLEL, OLLAMA_CONTEXT_LENGTH,
    # *_VISIBLE_DEVICES),
    # e.g. {"OLLAMA_FLASH_ATTENTION": "1"}.
    "ollama_extra_env": {},
    # Delete models an instance holds that its model set no longer lists.
    "ollama_prune_models": False,
    # Seconds a (re)started instance gets to answer before the pulls give up.
    "ollama_api_wait_s": 120,
    # Directory of the instances' environment files (<service>.env, 0640).
    "ollama_env_dir": "/etc/ollama",
    # Supplementary groups for ROCm containers. Empty by default: the container runs as root,
    # which podman leaves CAP_DAC_OVERRIDE, so /dev/kfd and /dev/dri/renderD* (root:render 660)
    # open without them, and `--group-add render` fails outright on images without a render
    # group (the Ollama image has none). For an image that runs as a non-root user, give the
    # host's numeric GIDs (getent group render video).
    "ollama_rocm_groups": [],
}


def check(values: Mapping[str, Any], installs: Set[str]) -> list[str]:
    """What the role cannot run without, for Ollama instances installed as ``installs``."""
    if "native" not in installs:
        return []
    return need_sha256(
        values,
        "ollama_release_sha256",
        "a native Ollama install checks the release archive against it",
    )
