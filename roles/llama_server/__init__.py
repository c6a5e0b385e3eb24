"""llama.cpp ``llama-server`` in router mode: one unit per instance, presets from the plan.

The cached build (llama-cpp-python 0.3.36's vendored llama.cpp, ``deploy/lab/llama_build.sh``) has
router mode (``tools/server/server-models.cpp``): started without ``-m`` and with
``--models-preset``, llama-server runs a child server per model on demand. A presets change is
applied with ``GET /models?reload=1``, which unloads only the models whose preset changed;
the unit restarts only when the unit itself or the binary changed.

The binary comes from ``llama_server_binary_url`` + ``llama_server_binary_sha256`` (the
executable itself), or from ``llama_server_binary_path`` on the controller (uploaded). The
llama_swap role installs it the same way: llama-swap starts its models with it.

Example (``deploy.py`` does this through ``deploy/apply/context.py``)::

    llama_server.backend(instances=host_plan.instances, rendered={...}, versions=plan.versions)
    llama_server.models(instances=host_plan.instances)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from pyinfra import host
from pyinfra.api import DeployError, deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, files
from pyinfra.operations.util import any_changed

from modelfleet.deploy.plan import BackendInstance, RenderedFile, Versions
from modelfleet.roles.artifacts import gguf_files, verified_download
from modelfleet.roles.llama_server.defaults import DEFAULTS
from modelfleet.roles.llama_server.operations import presets_reloaded
from modelfleet.roles.units import RestartHook, managed_unit, models_directories, system_user


@cache
def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def binary_source() -> tuple[str, str, str | None]:
    """(``url`` or ``path``, sha256, the URL or None) from the host's data."""
    data = host.data
    if data.llama_server_binary_path:
        path = str(data.llama_server_binary_path)
        if not Path(path).is_file():
            raise DeployError(f"{host.name}: llama_server_binary_path {path} is not a file")
        return "path", file_sha256(path), None
    if data.llama_server_binary_url and data.llama_server_binary_sha256:
        return (
            "url",
            str(data.llama_server_binary_sha256).lower(),
            str(data.llama_server_binary_url),
        )
    raise DeployError(
        f"{host.name}: set llama_server_binary_path, or llama_server_binary_url and "
        "llama_server_binary_sha256"
    )


def install_binary(version: str) -> tuple[OperationMeta, str]:
    """Put the binary in ``<root>/releases/<version>-<sha12>/`` and point ``current`` at it."""
    kind, sha256, url = binary_source()
    root = host.data.llama_server_root
    apt.packages(
        name="Run-time libraries of llama-server",
        packages=list(host.data.llama_server_packages),
        update=True,
        cache_time=host.data.llama_server_apt_cache_time,
    )
    release = f"{root}/releases/{version}-{sha256[:12]}"
    if kind == "path":
        files.put(
            name=f"Upload llama-server {version}",
            src=str(host.data.llama_server_binary_path),
            dest=f"{release}/llama-server",
            mode="0755",
        )
    else:
        verified_download(
            name=f"Download llama-server {version}",
            src=str(url),
            dest=f"{release}/llama-server",
            sha256=sha256,
            mode="0755",
        )
    current = files.link(
        name=f"Make llama-server {version} current", path=f"{root}/current", target=release
    )
    return current, f"{root}/current/llama-server"


@deploy("llama-server backend", data_defaults=DEFAULTS)
def backend(
    instances: Sequence[BackendInstance],
    rendered: Mapping[str, Sequence[RenderedFile]],
    versions: Versions,
    restart: RestartHook | None = None,
) -> list[OperationMeta]:
    """Install the binary and run one router-mode unit per instance.

    ``rendered`` maps each instance name to its files from ``deploy/render.py`` (presets, unit).
    """
    data = host.data
    user = data.llama_server_user
    system_user(user, home="/var/lib/llama-server", extra_groups=data.llama_server_extra_groups)
    current, _ = install_binary(versions.llama_cpp)
    files.directory(name="Config directory", path=data.llama_server_config_dir, mode="0755")
    changes: list[OperationMeta] = [current]
    models_directories(instances, user)
    for inst in instances:
        unit_file = next(f for f in rendered[inst.name] if f.path.endswith(".service"))
        presets = next(f for f in rendered[inst.name] if f is not unit_file)
        unit, config_ops = managed_unit(
            inst.service_name,
            unit_file.content,
            config_files=[(presets.path, presets.content)],
            config_owner=user,
            restart_on_config=False,
            also_restart_when=[current],
            restart=restart,
        )
        # A (re)started server reads the presets anyway; a running one is told to re-read.
        presets_reloaded(
            name=f"Apply the new presets of {inst.service_name} (GET /models?reload=1)",
            port=inst.port,
            bind=inst.bind,
            _if=[
                any_changed(*config_ops),
                unit.did_not_change,
                current.did_not_change,
            ],
        )
        changes += [unit, *config_ops]
    return changes


@deploy("llama-server models", data_defaults=DEFAULTS)
def models(instances: Sequence[BackendInstance]) -> list[OperationMeta]:
    """Download every placed GGUF (sha256-checked); prune unused ones when asked to."""
    return gguf_files(
        instances, host.data.llama_server_user, prune=bool(host.data.llama_server_prune_models)
    )
