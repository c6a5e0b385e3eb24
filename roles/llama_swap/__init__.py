"""llama-swap: a pinned release, one systemd unit and config per instance, verified GGUF files.

A config change must not cold-start the host: llama-swap unloads every model when it reloads
its config, so ``-watch-config`` is off, the config is rendered deterministically, and an
instance restarts only when its own config, unit or release really changed.

Example (``deploy.py`` does this through ``deploy/apply/context.py``)::

    llama_swap.backend(instances=host_plan.instances, rendered={...}, versions=plan.versions)
    llama_swap.models(instances=host_plan.instances)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from modelfleet.deploy.plan import BackendInstance, RenderedFile, Versions
from modelfleet.roles.artifacts import gguf_files
from modelfleet.roles.llama_server import install_binary
from modelfleet.roles.llama_swap.defaults import DEFAULTS
from modelfleet.roles.units import (
    RestartHook,
    managed_unit,
    models_directories,
    pinned_release,
    system_user,
)


def release_url(version: str) -> str:
    template = str(host.data.llama_swap_release_url)
    return template.format(version=version, number=version.lstrip("v"))


@deploy("llama-swap backend", data_defaults=DEFAULTS)
def backend(
    instances: Sequence[BackendInstance],
    rendered: Mapping[str, Sequence[RenderedFile]],
    versions: Versions,
    restart: RestartHook | None = None,
) -> list[OperationMeta]:
    """Install llama-swap and the llama-server it starts models with; run one unit per instance.

    ``rendered`` maps each instance name to its files from ``deploy/render.py`` (config, unit);
    the knobs were checked with the plan (``defaults.check``).
    """
    data = host.data
    user, root = data.llama_swap_user, data.llama_swap_root
    system_user(user, home="/var/lib/llama-swap", extra_groups=data.llama_swap_extra_groups)
    current = pinned_release(
        "llama-swap",
        url=release_url(versions.llama_swap),
        sha256=data.llama_swap_release_sha256,
        root=root,
        version=versions.llama_swap,
    )
    # Every model's `cmd` runs llama-server: the same binary (and source) as the llama_server role.
    server_binary, _ = install_binary(versions.llama_cpp)
    files.directory(name="Config directory", path=data.llama_swap_config_dir, mode="0755")
    changes: list[OperationMeta] = [current, server_binary]
    models_directories(instances, user)
    for inst in instances:
        config, unit_file = _config_and_unit(rendered[inst.name])
        # A new llama-server binary is picked up by models started after it; no restart.
        unit, config_ops = managed_unit(
            inst.service_name,
            unit_file.content,
            config_files=[(config.path, config.content)],
            config_owner=user,
            also_restart_when=[current],
            restart=restart,
        )
        changes += [unit, *config_ops]
    return changes


def _config_and_unit(files: Sequence[RenderedFile]) -> tuple[RenderedFile, RenderedFile]:
    unit = next(f for f in files if f.path.endswith(".service"))
    return next(f for f in files if f is not unit), unit


@deploy("llama-swap models", data_defaults=DEFAULTS)
def models(instances: Sequence[BackendInstance]) -> list[OperationMeta]:
    """Download every placed GGUF (sha256-checked); prune unused ones when asked to."""
    user = host.data.llama_swap_user
    return gguf_files(instances, user, prune=bool(host.data.llama_swap_prune_models))
