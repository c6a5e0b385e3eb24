"""Everything a local container fleet needs besides its containers.

``inventory/local.py`` describes the hosts; this module supplies what they download and the
data that tells the roles where to find it:

- the Ollama and llama-swap STAND-IN releases (``deploy/lab/standins/release.py``: their real
  releases cannot be downloaded here), built reproducibly so their sha256 never changes;
- the real GGUF model and the cached real llama-server binary (``deploy/lab/llama_build.sh``);
- a file server on the podman bridge (containers cannot reach this machine's 127.0.0.1);
- the data file that ``inventory/local.py`` merges into every host's data.

The demo (``deploy/lab/demo.py``) and the fleet tests (``tests/fleet/``) both use it, so the demo
is exactly what CI deploys.

Example::

    with serve_files(files_dir) as files_url:
        data = stack_data(files_url, build_stack_files(files_dir), demo_catalog(files_url))
        write_data(Path(".fleet/demo/data.json"), data)
        # pyinfra -y inventory/local.py deploy.py  (with MODELFLEET_FLEET=demo)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.deploy.inventory import Versions
from modelfleet.deploy.lab import localfleet
from modelfleet.deploy.lab.llama import LLAMA_CPP_PYTHON_VERSION, gguf_model_path, llama_server_bin
from modelfleet.deploy.lab.standins.release import build_releases, serve_releases

REPO = Path(__file__).resolve().parents[2]

GEMMA = "gemma3-270m"
GEMMA_ALIAS = "tiny"  # another name clients may use for it
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
# Models the Ollama stand-in's "registry" can pull (the real one would be ollama.com).
STANDIN_OLLAMA_CATALOG = [
    {"name": "gemma3:270m", "size_mb": 242, "family": "gemma3", "parameter_size": "268.10M"},
    {"name": "qwen2.5:0.5b", "size_mb": 379, "family": "qwen2", "parameter_size": "494.03M"},
]
# The fixed port of the demo's file server: a stable URL keeps a re-run free of changes.
FILES_PORT = 8765


class StackError(RuntimeError):
    """Something the local stack needs is missing; the message says how to get it."""


@dataclass(frozen=True)
class StackFiles:
    """What the file server offers: release file names and sha256, and the real binaries."""

    ollama_release: str
    ollama_sha256: str
    llama_swap_release: str
    llama_swap_sha256: str
    llama_server_bin: Path


def build_stack_files(files_dir: Path) -> StackFiles:
    """Build the stand-in releases into ``files_dir`` and link the real GGUF next to them."""
    server_bin, model = llama_server_bin(), gguf_model_path()
    if server_bin is None or model is None:
        raise StackError(
            "the real llama-server build or the gemma3 GGUF is missing: "
            "run `bash deploy/lab/llama_build.sh` (about 5 minutes the first time)"
        )
    versions = Versions()
    releases = build_releases(
        files_dir, ollama_version=versions.ollama, llama_swap_version=versions.llama_swap
    )
    link = files_dir / GEMMA_FILE
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model)
    return StackFiles(
        ollama_release=releases["ollama"].filename,
        ollama_sha256=releases["ollama"].sha256,
        llama_swap_release=releases["llama-swap"].filename,
        llama_swap_sha256=releases["llama-swap"].sha256,
        llama_server_bin=server_bin,
    )


@contextlib.contextmanager
def serve_files(
    files_dir: Path, port: int = 0, host: str = localfleet.BRIDGE_GATEWAY
) -> Iterator[str]:
    """Serve ``files_dir`` on a podman network's gateway (default: podman's own bridge) while
    the block runs; yields its base URL."""
    try:
        with serve_releases(files_dir, host=host, port=port) as server:
            yield server.url
    except OSError as exc:
        if exc.errno == 98:  # EADDRINUSE
            raise StackError(
                f"port {host}:{port} is in use (the fleet's file server): "
                f"stop what listens there (`ss -ltnp 'sport = :{port}'`), or choose another "
                "port with --files-port"
            ) from None
        if exc.errno == 99:  # EADDRNOTAVAIL: the network's bridge is not up yet
            raise StackError(
                f"{host} is not an address of this machine: a podman network's bridge "
                "appears with its first container; bring the hosts up first"
            ) from None
        raise


def gemma_entry(files_url: str, groups: list[str], **extra: Any) -> dict[str, Any]:
    """The catalog entry of the real gemma3 270M model, downloaded from the file server."""
    return {
        "ollama": "gemma3:270m",
        "gguf": {"url": f"{files_url}/{GEMMA_FILE}", "sha256": GEMMA_SHA256, "file": GEMMA_FILE},
        "size_mb": 242,
        "kv_mb_per_1k_ctx": 18,
        "ctx": 2048,
        "slots": 1,
        "groups": groups,
        # A base model without a chat template (see deploy/lab/llama.py).
        "llama_args": ["--no-jinja", "--chat-template", "gemma"],
        **extra,
    }


def demo_catalog(files_url: str) -> dict[str, Any]:
    """The demo's models: the real gemma3 on the llama.cpp host, stand-in models elsewhere.

    gemma3-270m lives only on the llama-server host, so the demo's first request is answered
    by real llama.cpp inference; the GPU-emulated hosts serve their own stand-in models.
    """
    return {
        GEMMA: gemma_entry(files_url, ["cpu"], aliases=[GEMMA_ALIAS]),
        "qwen2.5-0.5b": {
            "ollama": "qwen2.5:0.5b",
            "size_mb": 379,
            "kv_mb_per_1k_ctx": 12,
            "ctx": 2048,
            "slots": 2,
            "groups": ["gpu_nvidia"],
        },
        # The same GGUF bytes under another name, served by the llama-swap stand-in.
        "gemma3-270m-swap": {
            **gemma_entry(files_url, ["gpu_amd"]),
            "ollama": None,
        },
    }


def stack_data(files_url: str, files: StackFiles, catalog: dict[str, Any]) -> dict[str, Any]:
    """The host data that points the roles at the stand-ins and the real llama-server."""
    return {
        "ollama_release_url": f"{files_url}/{files.ollama_release}",
        "ollama_release_sha256": files.ollama_sha256,
        "ollama_extra_env": {
            "STANDIN_CATALOG": json.dumps(STANDIN_OLLAMA_CATALOG, separators=(",", ":")),
            "STANDIN_TOKENS_PER_S": "0",
        },
        "ollama_prune_models": True,
        "llama_swap_release_url": files_url + "/llama-swap_{number}_linux_amd64.tar.gz",
        "llama_swap_release_sha256": files.llama_swap_sha256,
        "llama_swap_prune_models": True,
        "llama_server_binary_path": str(files.llama_server_bin),
        # what that binary is: llama-cpp-python 0.3.36's vendored llama.cpp (no release tag)
        "versions": {"llama_cpp": f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}"},
        "llama_server_extra_args": ["--threads", "1"],
        "model_catalog": catalog,
    }


def write_data(path: Path, data: dict[str, Any]) -> bool:
    """Write the data file (mode 0600) only when it changes; True when it changed."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return True


def fleet_env(fleet: str, data_file: Path, files_url: str) -> dict[str, str]:
    """The environment that points ``inventory/local.py`` at this fleet and its data."""
    return {
        **os.environ,
        "MODELFLEET_FLEET": fleet,
        "MODELFLEET_LOCAL_DATA": str(data_file),
        "MODELFLEET_FILES_URL": files_url,
    }
