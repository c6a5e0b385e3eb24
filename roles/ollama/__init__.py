"""Ollama: native (pinned release archive + one systemd unit per instance) or container mode.

- Native: the release archive is downloaded from ``ollama_release_url`` and checked against
  ``ollama_release_sha256``, unpacked to ``<root>/releases/<version>-<sha12>/`` and linked as
  ``<root>/current`` and ``/usr/local/bin/ollama``; instances run as the ``ollama`` system user.
- Container: each instance is a podman container of the CUDA or ROCm image from the fleet's
  ``versions``, started by its own systemd unit (CDI devices, or ``/dev/kfd`` + ``/dev/dri``).

Units and environment files come from ``deploy/render.py`` (the plan's environment plus
``ollama_extra_env``); an instance restarts only when its own unit or env file changed, or, in
native mode, when the release changed. Models are pulled through the API with progress
(``ollama-pull.py``), only the missing ones; with ``ollama_prune_models`` the models that left
the set are deleted.

Example (``deploy.py`` does this through ``deploy/apply/context.py``)::

    ollama.backend(instances=host_plan.instances, rendered={...}, versions=plan.versions)
    ollama.models(instances=host_plan.instances)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, files

from modelfleet.deploy.plan import BackendInstance, RenderedFile, Versions
from modelfleet.roles.ollama import operations as ops
from modelfleet.roles.ollama.defaults import BINARY_LINK, DEFAULTS
from modelfleet.roles.units import (
    RestartHook,
    managed_unit,
    models_directories,
    pinned_release,
    system_user,
)

HELPER_SOURCE = Path(__file__).parent / "files" / "ollama-pull.py"


def release_url(version: str) -> str:
    return str(host.data.ollama_release_url).format(version=version)


@deploy("Ollama backend", data_defaults=DEFAULTS)
def backend(
    instances: Sequence[BackendInstance],
    rendered: Mapping[str, Sequence[RenderedFile]],
    versions: Versions,
    restart: RestartHook | None = None,
) -> list[OperationMeta]:
    """Install Ollama (native release and/or container images) and one unit per instance.

    ``rendered`` maps each instance name to its files from ``deploy/render.py`` (env + unit).
    """
    data = host.data
    user = data.ollama_user
    system_user(user, home="/var/lib/ollama", extra_groups=data.ollama_extra_groups)
    changes: list[OperationMeta] = []
    release: list[OperationMeta] = []
    if any(inst.install == "native" for inst in instances):
        if data.ollama_packages:
            apt.packages(
                name="Tools to unpack the Ollama release",
                packages=list(data.ollama_packages),
                update=True,
                cache_time=data.ollama_apt_cache_time,
            )
        # ollama_release_sha256 was checked with the plan (defaults.check).
        release.append(
            pinned_release(
                "Ollama",
                url=release_url(versions.ollama),
                sha256=data.ollama_release_sha256,
                root=data.ollama_root,
                version=versions.ollama,
                link=BINARY_LINK,
                binary="bin/ollama",
            )
        )
        changes += release
    env_dir = data.ollama_env_dir
    files.directory(name=f"Env directory {env_dir}", path=env_dir, mode="0755")
    models_directories(instances, user)
    for inst in instances:
        unit = next(f for f in rendered[inst.name] if f.path.endswith(".service"))
        configs = [(f.path, f.content) for f in rendered[inst.name] if f is not unit]
        unit_op, config_ops = managed_unit(
            inst.service_name,
            unit.content,
            config_files=configs,
            config_owner=user,
            also_restart_when=release if inst.install == "native" else [],
            restart=restart,
        )
        changes += [unit_op, *config_ops]
    return changes


@deploy("Ollama models", data_defaults=DEFAULTS)
def models(instances: Sequence[BackendInstance]) -> list[OperationMeta]:
    """Pull each instance's missing models through its API; prune when ``ollama_prune_models``.

    A freshly (re)started instance gets ``ollama_api_wait_s`` to answer before the pulls.
    """
    helper = files.put(
        name="Pull helper (ollama-pull.py)",
        src=str(HELPER_SOURCE),
        dest=ops.PULL_HELPER,
        mode="0755",
    )
    result = [helper]
    for inst in instances:
        result.append(
            ops.models(
                name=f"Models of {inst.service_name}",
                port=inst.port,
                bind=inst.bind,
                wanted=[m.ollama for m in inst.models if m.ollama],
                prune=bool(host.data.ollama_prune_models),
                wait_s=host.data.ollama_api_wait_s,
            )
        )
    return result
