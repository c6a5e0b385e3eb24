#!/usr/bin/env python3
"""STAND-IN for the Ollama server and CLI (``ollama serve``, ``ollama pull`` ...).

The real Ollama release cannot be downloaded here, so this single stdlib-only module plays it:
the same HTTP API, the same environment variables, and the same scheduling rules as
``server/sched.go`` (see shared/reference/backends.md, section c). Models are simulated: a model
"loads" in a time proportional to its size, "generates" deterministic fake tokens at a set rate,
and occupies a share of a simulated VRAM budget.

Faithful: endpoints and JSON shapes, NDJSON streaming by default, nanosecond durations,
``done_reason``, ``keep_alive`` (0 / negative / duration, per request or OLLAMA_KEEP_ALIVE),
one load at a time, eviction order (idle runner with the shortest keep_alive, then name),
OLLAMA_MAX_LOADED_MODELS (default 3 per GPU), OLLAMA_NUM_PARALLEL slots, OLLAMA_MAX_QUEUE -> 503,
reload when ``num_ctx`` changes, pulled models persisted under OLLAMA_MODELS, partial CPU
offload (``size_vram < size``) for a model larger than the whole VRAM.
Simplified: VRAM is one pool over the visible GPUs (no per-GPU placement, no 80 % rule), no
blobs are written (only manifests), text is fake, embeddings are hash-derived vectors.

Stand-in-only knobs (environment):
  STANDIN_VRAM_MB          VRAM per GPU, comma separated ("24576,24576"); unset: the GPUs
                           ``nvidia-smi`` lists (uuid, memory), as Ollama asks the driver;
                           neither = CPU only
  STANDIN_LOAD_MS_PER_GB   simulated load time (default 200)
  STANDIN_TOKENS_PER_S     simulated decode speed (default 50; 0 = as fast as possible)
  STANDIN_PULL_MB_PER_S    simulated download speed (default 2000)
  STANDIN_CATALOG          pullable models: a JSON file path or inline JSON list (see Catalog)
  STANDIN_POISON           fault injection: an inference request whose body contains this text
                           gets a 500 {"error": ...}, like content a real backend cannot handle

Stand-in-only fault injection at run time (for the router's soak, bench/router_soak.py):
``POST /standin/faults {"mode": "ok" | "hang" | "500"}``: ``hang`` accepts inference requests
and never answers them (the probe ``/api/version`` still answers), ``500`` answers every
inference request with a 500.

Run it like the real binary::

    OLLAMA_HOST=127.0.0.1:11434 python3 ollama.py serve
    python3 ollama.py pull llama3.2:1b && python3 ollama.py list

or in-process (tests)::

    with start_in_thread(vram_mb=8192, models=["llama3.2:1b"]) as ollama:
        urllib.request.urlopen(ollama.url + "/api/ps")
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import logging
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

VERSION = "0.14.1"
DEFAULT_PORT = 11434
FOREVER_S = (2**63 - 1) / 1e9  # Go's MaxInt64 nanoseconds: keep_alive < 0 means "forever"
MAX_QUEUE_ERROR = "server busy, please try again.  maximum pending requests exceeded"
GB = 1024**3
MB = 1024**2


# --------------------------------------------------------------------------- settings


GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0}
GO_UNITS |= {"m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string, as ``time.ParseDuration`` reads it (``"1h30m"``,
    ``"+5m"``, ``".5h"``, ``"-1s"``; a unit on every number, only ``"0"`` goes without), or
    ValueError with Go's message. Example: ``parse_go_duration("1m30s") == 90.0``."""
    quoted = json.dumps(text, ensure_ascii=False)
    rest = text[1:] if text[:1] in "+-" else text
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {quoted}")
    seconds = 0.0
    while rest:
        match = _GO_PART.match(rest)  # always matches: both parts may be empty
        assert match is not None
        number, unit = match.group(1), match.group(2)
        if number.strip(".") == "":
            raise ValueError(f"time: invalid duration {quoted}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in GO_UNITS:
            raise ValueError(f"time: unknown unit {json.dumps(unit)} in duration {quoted}")
        seconds += float(number) * GO_UNITS[unit]
        rest = rest[match.end() :]
    return -seconds if text.startswith("-") else seconds


def parse_duration(value: Any) -> float:
    """A request's ``keep_alive`` as Ollama binds it (api/types.go ``Duration``): a number of
    seconds or a Go duration string; a string without a unit (``"300"``, ``"-1"``) is an
    error, as in Ollama (a 400). Negative means forever (returned as FOREVER_S).
    Example: ``parse_duration("1m30s") == 90.0``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    try:
        seconds = parse_go_duration(value) if isinstance(value, str) else float(value)
    except OverflowError:  # a number Go's float64 cannot hold either
        raise ValueError(f"keep_alive: number {value} out of range") from None
    return FOREVER_S if seconds < 0 else seconds


def keep_alive_from_env(text: str) -> float:
    """OLLAMA_KEEP_ALIVE as envconfig ``KeepAlive`` reads it: a Go duration, else whole seconds
    (``"600"``, ``"-1"``), else, silently, the 5 minute default. Negative means forever."""
    text = text.strip()
    if not text:
        return 300.0
    try:
        seconds = parse_go_duration(text)
    except ValueError:
        seconds = float(text) if re.fullmatch(r"[+-]?[0-9]+", text) else 300.0
    return FOREVER_S if seconds < 0 else seconds


def parse_host(value: str | None) -> tuple[str, int]:
    """OLLAMA_HOST as Ollama reads it: "[scheme://]host[:port]", defaults 127.0.0.1:11434."""
    text = (value or "").strip()
    text = re.sub(r"^[a-z]+://", "", text).rstrip("/")
    if not text:
        return "127.0.0.1", DEFAULT_PORT
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, DEFAULT_PORT
    if not port.isdigit():
        raise ValueError(f"OLLAMA_HOST: invalid port in {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {raw!r}") from None


def _env_float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {raw!r}") from None


def discovered_gpus(env: dict[str, str]) -> list[tuple[str, int]]:
    """``(uuid, MiB)`` per NVIDIA GPU as ``nvidia-smi`` reports it (on the lab hosts, the
    emulated GPUs' tool), as Ollama asks the driver at start; ``[]`` without one."""
    smi = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
    if smi is None:
        return []
    query = ["--query-gpu=uuid,memory.total", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run([smi, *query], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.stdout.splitlines():
        uuid, _, mib = (part.strip() for part in line.partition(","))
        if mib.isdigit():
            gpus.append((uuid, int(mib)))
    return gpus


def visible_gpus(gpus: list[tuple[str, int]], visible: str) -> list[tuple[str, int]]:
    """CUDA's ``*_VISIBLE_DEVICES``: indices or (prefixes of) UUIDs, in the order given; an
    entry that names no GPU ends the list (``-1`` hides them all).

    Example::

        visible_gpus([("GPU-a1", 24564), ("GPU-b2", 24564), ("", 81920)], "2,GPU-a")
        # [("", 81920), ("GPU-a1", 24564)]
    """
    chosen: list[int] = []
    for wanted in (v for v in visible.replace(" ", "").split(",") if v):
        if wanted.isdigit():
            match = [int(wanted)] if int(wanted) < len(gpus) else []
        else:
            match = [i for i, (uuid, _) in enumerate(gpus) if uuid and uuid.startswith(wanted)]
        if len(match) != 1 or match[0] in chosen:
            break
        chosen.append(match[0])
    return [gpus[i] for i in chosen]


@dataclass
class Settings:
    """Everything the server reads from its environment (real knobs, then stand-in knobs)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models_dir: Path = field(default_factory=lambda: Path.home() / ".ollama" / "models")
    keep_alive_s: float = 300.0
    max_loaded_models: int = 0  # 0 = 3 per GPU (3 on CPU)
    num_parallel: int = 1
    max_queue: int = 512
    context_length: int = 4096  # default num_ctx, clipped to the model's trained length
    gpu_vram_mb: list[int] = field(default_factory=list)  # after *_VISIBLE_DEVICES filtering
    load_ms_per_gb: float = 200.0
    tokens_per_s: float = 50.0
    pull_mb_per_s: float = 2000.0
    catalog_source: str = ""
    poison: str = ""  # stand-in fault injection, see STANDIN_POISON

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        host, port = parse_host(env.get("OLLAMA_HOST"))
        listed = [int(v) for v in env.get("STANDIN_VRAM_MB", "").replace(" ", "").split(",") if v]
        found = [("", mb) for mb in listed] if listed else discovered_gpus(env)
        visible = env.get("CUDA_VISIBLE_DEVICES", env.get("ROCR_VISIBLE_DEVICES"))
        if visible is not None:
            found = visible_gpus(found, visible)
        gpus = [mb for _, mb in found]
        return cls(
            host=host,
            port=port,
            models_dir=Path(env.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models"),
            keep_alive_s=keep_alive_from_env(env.get("OLLAMA_KEEP_ALIVE", "")),
            max_loaded_models=_env_int(env, "OLLAMA_MAX_LOADED_MODELS", 0),
            num_parallel=max(1, _env_int(env, "OLLAMA_NUM_PARALLEL", 1)),
            max_queue=_env_int(env, "OLLAMA_MAX_QUEUE", 512),
            context_length=_env_int(env, "OLLAMA_CONTEXT_LENGTH", 4096),
            gpu_vram_mb=gpus,
            load_ms_per_gb=_env_float(env, "STANDIN_LOAD_MS_PER_GB", 200.0),
            tokens_per_s=_env_float(env, "STANDIN_TOKENS_PER_S", 50.0),
            pull_mb_per_s=_env_float(env, "STANDIN_PULL_MB_PER_S", 2000.0),
            catalog_source=env.get("STANDIN_CATALOG", ""),
            poison=env.get("STANDIN_POISON", ""),
        )

    @property
    def vram_bytes(self) -> int:
        return sum(self.gpu_vram_mb) * MB

    @property
    def effective_max_loaded(self) -> int:
        return self.max_loaded_models or 3 * max(1, len(self.gpu_vram_mb))


# --------------------------------------------------------------------------- catalog


def normalize_name(name: str) -> str:
    """ "llama3.2" -> "llama3.2:latest" (Ollama's default tag)."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass(frozen=True)
class ModelInfo:
    """A pullable model. ``size`` is the file size; loaded, it takes ``size`` plus a KV cache of
    ``kv_mb_per_1k_ctx`` MB per 1024 tokens of context per parallel slot (as ``/api/ps`` shows)."""

    name: str
    size: int
    kv_mb_per_1k_ctx: float = 0.0
    family: str = "llama"
    parameter_size: str = "1B"
    quantization_level: str = "Q4_K_M"
    context_length: int = 4096
    capabilities: tuple[str, ...] = ("completion", "tools")
    embedding_length: int = 16

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"standin:{self.name}".encode()).hexdigest()

    @property
    def is_embedding(self) -> bool:
        return "embedding" in self.capabilities

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str) -> ModelInfo:
        if "name" not in raw:
            raise ValueError(f"{where}: catalog entry without 'name': {raw!r}")
        if "size" in raw:
            size = int(raw["size"])
        elif "size_mb" in raw:
            size = int(float(raw["size_mb"]) * MB)
        else:
            raise ValueError(f"{where}: catalog entry {raw['name']!r} needs 'size' or 'size_mb'")
        caps = tuple(raw.get("capabilities") or ("completion", "tools"))
        return cls(
            name=normalize_name(str(raw["name"])),
            size=size,
            family=str(raw.get("family", "llama")),
            parameter_size=str(raw.get("parameter_size", "1B")),
            quantization_level=str(raw.get("quantization_level", "Q4_K_M")),
            context_length=int(raw.get("context_length", 4096)),
            capabilities=caps,
            embedding_length=int(raw.get("embedding_length", 16)),
            kv_mb_per_1k_ctx=float(raw.get("kv_mb_per_1k_ctx", 0)),
        )

    def memory(self, num_ctx: int, parallel: int) -> int:
        """Bytes in memory when loaded with ``num_ctx`` context and ``parallel`` slots."""
        return self.size + int(self.kv_mb_per_1k_ctx * MB * num_ctx / 1024 * parallel)


DEFAULT_CATALOG: list[dict[str, Any]] = [
    {"name": "llama3.2:1b", "size_mb": 1260, "parameter_size": "1.2B", "context_length": 131072},
    {"name": "llama3.2:3b", "size_mb": 1926, "parameter_size": "3.2B", "context_length": 131072},
    {"name": "llama3.2:latest", "size_mb": 1926, "parameter_size": "3.2B"},
    {"name": "qwen2.5:0.5b", "size_mb": 379, "family": "qwen2", "parameter_size": "494.03M"},
    {"name": "qwen2.5:7b", "size_mb": 4466, "family": "qwen2", "parameter_size": "7.6B"},
    {"name": "qwen2.5:14b", "size_mb": 8703, "family": "qwen2", "parameter_size": "14.8B"},
    {"name": "llama3.1:8b", "size_mb": 4692, "parameter_size": "8.0B"},
    {"name": "gemma3:27b", "size_mb": 16609, "family": "gemma3", "parameter_size": "27.4B"},
    {"name": "llama3.3:70b", "size_mb": 40550, "parameter_size": "70.6B"},
    {
        "name": "nomic-embed-text:latest",
        "size_mb": 262,
        "family": "nomic-bert",
        "parameter_size": "137M",
        "quantization_level": "F16",
        "capabilities": ["embedding"],
        "embedding_length": 768,
    },
]


class Catalog:
    """What ``/api/pull`` can fetch ("the registry"). STANDIN_CATALOG: a JSON file or inline
    JSON list of ``{"name", "size_mb" | "size", "family"?, "parameter_size"?,
    "quantization_level"?, "context_length"?, "capabilities"?, "embedding_length"?}``."""

    def __init__(self, entries: list[ModelInfo]) -> None:
        self._by_name = {m.name: m for m in entries}

    @classmethod
    def load(cls, source: str | list[dict[str, Any]] | None) -> Catalog:
        if not source:
            raw, where = DEFAULT_CATALOG, "default catalog"
        elif isinstance(source, list):
            raw, where = source, "catalog"
        elif source.lstrip().startswith(("[", "{")):
            raw, where = json.loads(source), "STANDIN_CATALOG"
        else:
            raw, where = json.loads(Path(source).read_text()), source
        if isinstance(raw, dict):
            raw = raw.get("models", [])
        if not isinstance(raw, list):
            raise ValueError(f"{where}: expected a JSON list of models")
        return cls([ModelInfo.from_dict(item, where) for item in raw])

    def get(self, name: str) -> ModelInfo | None:
        return self._by_name.get(normalize_name(name))


# --------------------------------------------------------------------------- local store


class ModelStore:
    """Pulled models, persisted like Ollama's manifests under OLLAMA_MODELS so they survive a
    restart (manifests/registry.ollama.ai/library/<name>/<tag>; no blobs are written)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _manifest_path(self, name: str) -> Path:
        repo, tag = normalize_name(name).rsplit(":", 1)
        namespace = repo if "/" in repo else f"library/{repo}"
        return self.root / "manifests" / "registry.ollama.ai" / namespace / tag

    def save(self, model: ModelInfo) -> None:
        path = self._manifest_path(model.name)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [
                {
                    "mediaType": "application/vnd.ollama.image.model",
                    "digest": f"sha256:{model.digest}",
                    "size": model.size,
                }
            ],
            "standin": {**model.__dict__, "capabilities": list(model.capabilities)},
        }
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(manifest))
            tmp.replace(path)

    def delete(self, name: str) -> bool:
        path = self._manifest_path(name)
        with self._lock:
            if not path.exists():
                return False
            path.unlink()
            return True

    def get(self, name: str) -> tuple[ModelInfo, float] | None:
        """The model and its modification time, or None if it was never pulled."""
        path = self._manifest_path(name)
        try:
            raw = json.loads(path.read_text())["standin"]
            return ModelInfo.from_dict(raw, str(path)), path.stat().st_mtime
        except (OSError, KeyError, ValueError):
            return None

    def list(self) -> list[tuple[ModelInfo, float]]:
        base = self.root / "manifests" / "registry.ollama.ai"
        found = []
        for path in sorted(base.glob("*/*/*")) if base.exists() else []:
            if path.is_file() and not path.name.startswith("."):
                repo = "/".join(path.relative_to(base).parts[:-1]).removeprefix("library/")
                item = self.get(f"{repo}:{path.name}")
                if item:
                    found.append(item)
        return sorted(found, key=lambda item: -item[1])


# --------------------------------------------------------------------------- scheduler


class ServerBusyError(Exception):
    """OLLAMA_MAX_QUEUE pending requests already wait: answered with 503."""


class RequestCancelled(Exception):
    """The client went away while its request waited: it leaves the queue (like a cancelled
    request context in Ollama)."""


def never_cancelled() -> bool:
    return False


@dataclass
class Runner:
    """One loaded (or loading) model, like a runner process of the real server."""

    model: ModelInfo
    num_ctx: int
    size: int  # weights + KV cache
    size_vram: int
    keep_alive_s: float
    ready: bool = False
    active: int = 0  # requests holding one of the num_parallel slots
    expires_at: float = 0.0  # wall clock, meaningful while idle
    needs_reload: bool = False


@dataclass
class Lease:
    """A slot on a runner, held for the duration of one request."""

    runner: Runner
    load_duration_s: float
    released: bool = False


class Scheduler:
    """Ollama's scheduling rules (server/sched.go), simplified to one VRAM pool.

    A request whose model is ready takes a free slot, or waits for one (outside the queue).
    Otherwise it waits in the pending queue (bounded by OLLAMA_MAX_QUEUE) for the single
    loader: at the loaded-model cap, or when the model would not fit next to the residents,
    the loader unloads the idle runner with the shortest keep_alive (ties: name) and tries
    again; with no idle runner it waits.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runners: dict[str, Runner] = {}
        self.cond = threading.Condition()
        self.pending = 0  # requests waiting in acquire (for a load or for a slot)
        self.queued = 0  # of those, the ones in Ollama's pending queue (they need a load)
        self.loading = False
        self.stats = {"loads": 0, "unloads": 0, "requests": 0, "rejected": 0, "cancelled": 0}
        self.load_counts: dict[str, int] = {}

    # -- helpers (call with self.cond held)

    def _used_vram(self) -> int:
        return sum(r.size_vram for r in self.runners.values())

    def _unload(self, runner: Runner, why: str) -> None:
        self.runners.pop(runner.model.name, None)
        self.stats["unloads"] += 1
        log(f'unloading model="{runner.model.name}" reason={why}')
        self.cond.notify_all()

    def _fits(self, size: int) -> bool:
        if len(self.runners) >= self.settings.effective_max_loaded:
            return False
        vram = self.settings.vram_bytes
        # A model larger than all VRAM still loads once alone, partly on CPU (size_vram < size).
        return vram == 0 or not self.runners or self._used_vram() + size <= vram

    def _pick_victim(self) -> Runner | None:
        idle = [r for r in self.runners.values() if r.ready and r.active == 0]
        idle.sort(key=lambda r: (r.keep_alive_s, r.model.name))
        return idle[0] if idle else None

    # -- public API

    def acquire(
        self,
        model: ModelInfo,
        keep_alive_s: float,
        num_ctx: int | None,
        cancelled: Callable[[], bool] = never_cancelled,
    ) -> Lease:
        """Block until ``model`` is loaded and one of its slots is ours.

        ``cancelled`` is polled while waiting: when it turns true the request leaves the queue.
        """
        ctx = num_ctx or min(self.settings.context_length, model.context_length)
        with self.cond:
            # Ollama's GetRunner: a request for a loaded model that needs no reload goes
            # straight to its runner, where it waits for one of the OLLAMA_NUM_PARALLEL slots;
            # only a request that needs a load enters the pending queue. That queue holds
            # OLLAMA_MAX_QUEUE requests besides the one the scheduler is working on.
            runner = self.runners.get(model.name)
            usable = runner is not None and runner.ready and not runner.needs_reload
            queued = 0 if usable and runner is not None and runner.num_ctx == ctx else 1
            if queued and self.queued > self.settings.max_queue:
                self.stats["rejected"] += 1
                raise ServerBusyError(MAX_QUEUE_ERROR)
            self.pending += 1
            self.queued += queued
            self.stats["requests"] += 1
        try:
            return self._acquire(model, keep_alive_s, ctx, cancelled)
        finally:
            with self.cond:
                self.pending -= 1
                self.queued -= queued

    def _acquire(
        self, model: ModelInfo, keep_alive_s: float, num_ctx: int, cancelled: Callable[[], bool]
    ) -> Lease:
        load_duration = 0.0
        with self.cond:
            while True:
                runner = self.runners.get(model.name)
                if runner and runner.ready and runner.num_ctx != num_ctx:
                    runner.needs_reload = True  # different options: Ollama reloads the model
                    if runner.active == 0:
                        self._unload(runner, "options changed")
                        continue
                if runner and runner.ready and not runner.needs_reload:
                    if runner.active < self.settings.num_parallel:
                        runner.active += 1
                        runner.keep_alive_s = keep_alive_s
                        return Lease(runner, load_duration)
                elif runner is None and not self.loading:
                    if self._fits(model.memory(num_ctx, self.settings.num_parallel)):
                        runner = self._start_load(model, keep_alive_s, num_ctx)
                        break
                    victim = self._pick_victim()
                    if victim is not None:
                        self._unload(victim, "evicted to make room")
                        continue
                self.cond.wait(0.05 if cancelled is not never_cancelled else None)
                if cancelled():
                    self.stats["cancelled"] += 1
                    raise RequestCancelled(model.name)
        # Load outside the lock: other models keep serving meanwhile.
        started = time.monotonic()
        time.sleep(model.size / GB * self.settings.load_ms_per_gb / 1000)
        load_duration = time.monotonic() - started
        with self.cond:
            runner.ready = True
            runner.active = 1
            self.loading = False
            self.cond.notify_all()
        log(f'model loaded model="{model.name}" seconds={load_duration:.3f}')
        return Lease(runner, load_duration)

    def _start_load(self, model: ModelInfo, keep_alive_s: float, num_ctx: int) -> Runner:
        free = self.settings.vram_bytes - self._used_vram()
        size = model.memory(num_ctx, self.settings.num_parallel)
        runner = Runner(model, num_ctx, size, max(0, min(size, free)), keep_alive_s)
        self.runners[model.name] = runner
        self.loading = True
        self.stats["loads"] += 1
        self.load_counts[model.name] = self.load_counts.get(model.name, 0) + 1
        log(f'loading model="{model.name}" size={runner.size} size_vram={runner.size_vram}')
        return runner

    def release(self, lease: Lease) -> None:
        """Give the slot back (once); start the keep-alive clock (0 = unload now).

        Handlers release before writing the final chunk, so a client that sees ``done`` also
        sees the model's new state in ``/api/ps``."""
        with self.cond:
            if lease.released:
                return
            lease.released = True
            runner = lease.runner
            runner.active -= 1
            runner.expires_at = time.time() + runner.keep_alive_s
            done_with = runner.active == 0 and (runner.keep_alive_s == 0 or runner.needs_reload)
            if done_with and self.runners.get(runner.model.name) is runner:
                self._unload(runner, "reload" if runner.needs_reload else "keep_alive 0")
            self.cond.notify_all()

    def unload(self, name: str) -> None:
        """keep_alive 0 with an empty prompt: unload now, or as soon as the model is idle."""
        with self.cond:
            runner = self.runners.get(normalize_name(name))
            if runner is None or not runner.ready:
                return
            runner.keep_alive_s = 0
            if runner.active == 0:
                self._unload(runner, "keep_alive 0")

    def expire_idle(self) -> float:
        """Unload idle runners whose keep_alive ran out; return seconds until the next expiry."""
        with self.cond:
            now = time.time()
            for runner in list(self.runners.values()):
                if runner.ready and runner.active == 0 and runner.expires_at <= now:
                    self._unload(runner, "keep_alive expired")
            waits = [r.expires_at - now for r in self.runners.values() if r.ready and r.active == 0]
            return max(0.01, min(waits, default=1.0))

    def snapshot(self) -> list[Runner]:
        with self.cond:
            return [r for r in self.runners.values() if r.ready]


# --------------------------------------------------------------------------- fake inference

REPLY_TEXT = (
    "the fleet router sends each request to the host where its model already sits in gpu "
    "memory so the answer starts sooner and no other model has to leave"
)
WORDS = REPLY_TEXT.split(" ")


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def fake_tokens(
    prompt: str, limit: int | None, natural: int | None = None
) -> tuple[list[str], str]:
    """Deterministic reply tokens for ``prompt`` and the done_reason ("stop" or "length").

    ``natural`` (stand-in only, option ``standin_tokens``) overrides where the fake model
    would stop by itself: a long answer on demand, for clients that stop reading.
    """
    seed = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    natural = natural if natural is not None and natural > 0 else 8 + seed % 9
    count = natural if limit is None or limit <= 0 else min(natural, limit)  # 0: no limit
    tokens = [("" if i == 0 else " ") + WORDS[(seed + i) % len(WORDS)] for i in range(count)]
    return tokens, "length" if count < natural else "stop"


def _int_option(options: Any, key: str) -> int | None:
    """An integer option (Ollama answers 400 for one of another type)."""
    if not isinstance(options, dict):
        raise ApiError(400, "options: expected an object")
    value = options.get(key)
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(value)
        return int(value)
    except (ValueError, OverflowError):
        raise ApiError(400, f"option {key!r} must be of type integer") from None


def fake_embedding(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dims)]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in raw]


def fake_tool_call(tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Call the first tool with a placeholder for each required parameter."""
    for tool in tools:
        fn = tool.get("function") or {}
        if fn.get("name"):
            required = (fn.get("parameters") or {}).get("required") or []
            return {"function": {"name": fn["name"], "arguments": {k: "standin" for k in required}}}
    return None


def now_rfc3339(ts: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def expires_rfc3339(runner: Runner) -> str:
    if runner.keep_alive_s >= FOREVER_S:
        moment = datetime.now(tz=UTC) + timedelta(seconds=FOREVER_S)
        return moment.isoformat().replace("+00:00", "Z")
    return now_rfc3339(time.time() + runner.keep_alive_s if runner.active else runner.expires_at)


LOGGER = logging.getLogger("ollama-standin")


def log(message: str) -> None:
    LOGGER.info(message)


# --------------------------------------------------------------------------- HTTP layer


class ApiError(Exception):
    """An error answered as ``{"error": message}`` (OpenAI shape on /v1 routes)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed the connection mid-stream: stop generating."""


class HttpServer(http.server.ThreadingHTTPServer):
    """One thread per connection; a client that hangs up is not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 request handler: routing, body parsing, JSON/NDJSON/SSE writing."""

    protocol_version = "HTTP/1.1"
    server_version = "ollama-standin"
    sys_version = ""
    app: OllamaStandin  # set on the subclass made by OllamaStandin
    raw_body: bytes = b""

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.verbose:
            log(f'http "{self.requestline}" {args[1] if len(args) > 1 else ""}')

    # -- plumbing

    def _read_raw_body(self) -> bytes:
        """Read the whole body up front, so an early error never leaves it on the connection."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while (size := int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)) > 0:
                raw += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return raw
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _body(self) -> dict[str, Any]:
        raw = self.raw_body
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body

    def send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ClientGone from exc

    def end_stream(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    # -- dispatch

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self.raw_body = self._read_raw_body()
        path = self.path.split("?", 1)[0]
        openai = path.startswith("/v1/")
        try:
            route = self.app.routes.get((self.command, path))
            if route is None and self.command == "HEAD":
                route = self.app.routes.get(("GET", path))
            if route is None and path.startswith("/v1/models/") and self.command == "GET":
                route = self.app.openai.model
            if route is None:
                self.app.not_found += 1
                raise ApiError(404, "404 page not found")
            if self.command == "POST" and path in INFERENCE_PATHS:
                self.app.inject_fault(self)
            route(self)
        except ApiError as exc:
            if openai:
                kind = {400: "invalid_request_error", 404: "not_found_error"}.get(exc.status)
                self.send_json(
                    exc.status,
                    {
                        "error": {
                            "message": exc.message,
                            "type": kind or "api_error",
                            "param": None,
                            "code": None,
                        }
                    },
                )
            else:
                self.send_json(exc.status, {"error": exc.message})
        except ServerBusyError as exc:
            self.send_json(503, {"error": str(exc)})
        except (ClientGone, RequestCancelled):
            self.close_connection = True

    def client_gone(self) -> bool:
        """True once the client closed its connection (readable, and reading gives EOF)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


@dataclass
class Generation:
    """The shared part of /api/chat, /api/generate and the OpenAI routes."""

    model: ModelInfo
    prompt: str
    tokens: list[str]
    done_reason: str
    lease: Lease
    started: float
    tool_call: dict[str, Any] | None = None
    tokens_per_s: float | None = None  # stand-in only option ``standin_tokens_per_s``

    def metrics(self, eval_s: float) -> dict[str, Any]:
        total = time.monotonic() - self.started
        prompt_s = 0.0005 * count_tokens(self.prompt)
        return {
            "total_duration": int(total * 1e9),
            "load_duration": int(self.lease.load_duration_s * 1e9),
            "prompt_eval_count": count_tokens(self.prompt),
            "prompt_eval_duration": int(prompt_s * 1e9),
            "eval_count": len(self.tokens),
            "eval_duration": int(eval_s * 1e9),
        }


class OllamaApi:
    """The native /api/* endpoints."""

    def __init__(self, app: OllamaStandin) -> None:
        self.app = app

    # -- model lookups

    def require(self, body: dict[str, Any]) -> ModelInfo:
        name = body.get("model") or body.get("name")
        if not name or not isinstance(name, str):
            raise ApiError(400, "model is required")
        found = self.app.store.get(name)
        if found is None:
            raise ApiError(404, f"model '{name}' not found")
        return found[0]

    def keep_alive(self, body: dict[str, Any]) -> float:
        if body.get("keep_alive") is None:
            return self.app.settings.keep_alive_s
        try:
            return parse_duration(body["keep_alive"])
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

    # -- endpoints

    def root(self, h: Handler) -> None:
        h.send_text(200, "Ollama is running")

    def version(self, h: Handler) -> None:
        h.send_json(200, {"version": VERSION})

    def tags(self, h: Handler) -> None:
        models = []
        for model, mtime in self.app.store.list():
            models.append(
                {
                    "name": model.name,
                    "model": model.name,
                    "modified_at": now_rfc3339(mtime),
                    "size": model.size,
                    "digest": model.digest,
                    "details": model.details(),
                }
            )
        h.send_json(200, {"models": models})

    def ps(self, h: Handler) -> None:
        runners = self.app.scheduler.snapshot()
        runners.sort(key=lambda r: -(r.expires_at if not r.active else time.time() + 1e12))
        h.send_json(
            200,
            {
                "models": [
                    {
                        "name": r.model.name,
                        "model": r.model.name,
                        "size": r.size,
                        "digest": r.model.digest,
                        "details": r.model.details(),
                        "expires_at": expires_rfc3339(r),
                        "size_vram": r.size_vram,
                        "context_length": r.num_ctx,
                    }
                    for r in runners
                ]
            },
        )

    def show(self, h: Handler) -> None:
        model = self.require(h._body())
        found = self.app.store.get(model.name)
        arch = model.family.replace("-", "_")
        info: dict[str, Any] = {
            "general.architecture": arch,
            "general.parameter_count": int(model.size * 1.8),
            f"{arch}.context_length": model.context_length,
            f"{arch}.embedding_length": model.embedding_length,
        }
        h.send_json(
            200,
            {
                "modelfile": f"# Modelfile generated by the stand-in\nFROM {model.name}\n",
                "parameters": 'stop "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": model.details(),
                "model_info": info,
                "capabilities": list(model.capabilities),
                "modified_at": now_rfc3339(found[1] if found else None),
            },
        )

    def delete(self, h: Handler) -> None:
        body = h._body()
        name = body.get("model") or body.get("name")
        if not name:
            raise ApiError(400, "model is required")
        self.app.scheduler.unload(name)
        if not self.app.store.delete(name):
            raise ApiError(404, f"model '{name}' not found")
        h.send_json(200, {})

    def pull(self, h: Handler) -> None:
        body = h._body()
        name = body.get("model") or body.get("name")
        if not name:
            raise ApiError(400, "model is required")
        stream = body.get("stream") is not False
        model = self.app.catalog.get(name)
        if stream:
            h.start_stream("application/x-ndjson")
        try:
            for event in self.app.puller.pull(name, model):
                if stream:
                    h.write_chunk(json.dumps(event).encode() + b"\n")
        except ApiError as exc:
            if not stream:
                raise
            h.write_chunk(json.dumps({"error": exc.message}).encode() + b"\n")
        if stream:
            h.end_stream()
        else:
            h.send_json(200, {"status": "success"})

    def embed(self, h: Handler) -> None:
        body = h._body()
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs] if inputs else []
        elif inputs is None:
            inputs = []
        elif not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            raise ApiError(400, "invalid input type")
        keep_alive = self.keep_alive(body)
        model = self.require(body)
        started = time.monotonic()
        lease = self.app.scheduler.acquire(model, keep_alive, None, h.client_gone)
        try:
            vectors = [fake_embedding(text, model.embedding_length) for text in inputs]
        finally:
            self.app.scheduler.release(lease)
        if not inputs:  # no input: Ollama loads the model and answers with no vectors
            h.send_json(200, {"model": body["model"], "embeddings": []})
            return
        h.send_json(
            200,
            {
                "model": body["model"],
                "embeddings": vectors,
                "total_duration": int((time.monotonic() - started) * 1e9),
                "load_duration": int(lease.load_duration_s * 1e9),
                "prompt_eval_count": sum(count_tokens(t) for t in inputs),
            },
        )

    def embeddings(self, h: Handler) -> None:
        body = h._body()
        keep_alive = self.keep_alive(body)
        model = self.require(body)
        lease = self.app.scheduler.acquire(model, keep_alive, None, h.client_gone)
        self.app.scheduler.release(lease)
        prompt = body.get("prompt") or ""  # empty: the model is loaded, no vector
        vector = fake_embedding(prompt, model.embedding_length) if prompt else []
        h.send_json(200, {"embedding": vector})

    def chat(self, h: Handler) -> None:
        body = h._body()
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            raise ApiError(400, "messages must be a list")
        prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        self._generate(h, body, prompt, chat=True, empty=not messages)

    def generate(self, h: Handler) -> None:
        body = h._body()
        prompt = str(body.get("prompt") or "")
        self._generate(h, body, prompt, chat=False, empty=not prompt)

    def _generate(
        self, h: Handler, body: dict[str, Any], prompt: str, *, chat: bool, empty: bool
    ) -> None:
        keep_alive = self.keep_alive(body)  # bound with the JSON body, before the model lookup
        model = self.require(body)
        base = {"model": body["model"], "created_at": now_rfc3339()}
        if empty and keep_alive == 0:  # empty prompt + keep_alive 0: unload, any model
            self.app.scheduler.unload(model.name)
            h.send_json(
                200, {**base, **self._piece("", chat), "done": True, "done_reason": "unload"}
            )
            return
        if model.is_embedding:  # Ollama checks capabilities when it schedules, after that
            action = "chat" if chat else "generate"
            raise ApiError(400, f'"{body["model"]}" does not support {action}')
        options = body.get("options") or {}
        gen = self.app.start_generation(
            model, prompt, keep_alive, options, body.get("tools") if chat else None, h.client_gone
        )
        if empty:  # empty prompt: load only
            self.app.scheduler.release(gen.lease)
            h.send_json(200, {**base, **self._piece("", chat), "done": True, "done_reason": "load"})
            return
        if body.get("format") is not None:
            gen.tokens = [json.dumps({"response": "".join(gen.tokens).strip()})]
        stream = body.get("stream") is not False
        try:
            if stream:
                h.start_stream("application/x-ndjson")
            text, eval_s = "", 0.0
            for token, spent in self.app.emit(gen):
                text += token
                eval_s += spent
                if stream:
                    line = {
                        **base,
                        "created_at": now_rfc3339(),
                        **self._piece(token, chat),
                        "done": False,
                    }
                    h.write_chunk(json.dumps(line).encode() + b"\n")
            final: dict[str, Any] = {
                **base,
                "created_at": now_rfc3339(),
                **self._piece("" if stream else text, chat),
            }
            if gen.tool_call and chat:
                final["message"]["tool_calls"] = [gen.tool_call]
            final.update(done=True, done_reason=gen.done_reason, **gen.metrics(eval_s))
            if not chat:
                final["context"] = [len(t) for t in gen.tokens]
            self.app.scheduler.release(gen.lease)
            if stream:
                h.write_chunk(json.dumps(final).encode() + b"\n")
                h.end_stream()
            else:
                h.send_json(200, final)
        finally:
            self.app.scheduler.release(gen.lease)

    @staticmethod
    def _piece(text: str, chat: bool) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": text}} if chat else {"response": text}


class OpenAiApi:
    """The OpenAI-compatible /v1/* endpoints Ollama serves."""

    def __init__(self, app: OllamaStandin) -> None:
        self.app = app

    def models(self, h: Handler) -> None:
        h.send_json(
            200,
            {
                "object": "list",
                "data": [self._model_record(m, mtime) for m, mtime in self.app.store.list()],
            },
        )

    def model(self, h: Handler) -> None:
        name = h.path.split("?", 1)[0].removeprefix("/v1/models/")
        found = self.app.store.get(name)
        if found is None:
            raise ApiError(404, f"model '{name}' not found")
        h.send_json(200, self._model_record(*found))

    @staticmethod
    def _model_record(model: ModelInfo, mtime: float) -> dict[str, Any]:
        return {"id": model.name, "object": "model", "created": int(mtime), "owned_by": "library"}

    def embeddings(self, h: Handler) -> None:
        body = h._body()
        model = self.app.ollama.require(body)
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        lease = self.app.scheduler.acquire(
            model, self.app.settings.keep_alive_s, None, h.client_gone
        )
        self.app.scheduler.release(lease)
        tokens = sum(count_tokens(t) for t in inputs)
        h.send_json(
            200,
            {
                "object": "list",
                "model": body["model"],
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": fake_embedding(t, model.embedding_length),
                    }
                    for i, t in enumerate(inputs)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def chat(self, h: Handler) -> None:
        body = h._body()
        messages = body.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        self._complete(h, body, prompt, chat=True)

    def completions(self, h: Handler) -> None:
        body = h._body()
        self._complete(h, body, str(body.get("prompt") or ""), chat=False)

    def _complete(self, h: Handler, body: dict[str, Any], prompt: str, *, chat: bool) -> None:
        model = self.app.ollama.require(body)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        gen = self.app.start_generation(
            model,
            prompt,
            self.app.settings.keep_alive_s,
            {"num_predict": limit} if limit else {},
            body.get("tools") if chat else None,
            h.client_gone,
        )
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{int(time.time() * 1000) % 1000000}"
        head = {
            "id": ident,
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_ollama",
        }
        finish = "tool_calls" if gen.tool_call and chat else gen.done_reason
        usage = {
            "prompt_tokens": count_tokens(prompt),
            "completion_tokens": len(gen.tokens),
            "total_tokens": count_tokens(prompt) + len(gen.tokens),
        }
        tool_calls = None
        if gen.tool_call:
            fn = gen.tool_call["function"]
            tool_calls = [
                {
                    "id": "call_standin",
                    "index": 0,
                    "type": "function",
                    "function": {"name": fn["name"], "arguments": json.dumps(fn["arguments"])},
                }
            ]
        try:
            if body.get("stream"):
                self._stream(
                    h,
                    gen,
                    head,
                    chat,
                    finish,
                    tool_calls,
                    usage if (body.get("stream_options") or {}).get("include_usage") else None,
                )
                return
            text = "".join(token for token, _ in self.app.emit(gen))
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if tool_calls:
                    message["tool_calls"] = tool_calls
                choice = {"index": 0, "message": message, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text, "finish_reason": finish}
            obj = "chat.completion" if chat else "text_completion"
            self.app.scheduler.release(gen.lease)
            h.send_json(200, {**head, "object": obj, "choices": [choice], "usage": usage})
        finally:
            self.app.scheduler.release(gen.lease)

    def _stream(
        self,
        h: Handler,
        gen: Generation,
        head: dict[str, Any],
        chat: bool,
        finish: str,
        tool_calls: list[dict[str, Any]] | None,
        usage: dict[str, Any] | None,
    ) -> None:
        obj = "chat.completion.chunk" if chat else "text_completion"
        h.start_stream("text/event-stream")

        def send(choice: dict[str, Any], **extra: Any) -> None:
            chunk = {**head, "object": obj, "choices": [choice] if choice else [], **extra}
            h.write_chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        for token, _ in self.app.emit(gen):
            if chat:
                send(
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": token},
                        "finish_reason": None,
                    }
                )
            else:
                send({"index": 0, "text": token, "finish_reason": None})
        self.app.scheduler.release(gen.lease)
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""}
            if tool_calls:
                delta["tool_calls"] = tool_calls
            send({"index": 0, "delta": delta, "finish_reason": finish})
        else:
            send({"index": 0, "text": "", "finish_reason": finish})
        if usage:
            send({}, usage=usage)
        h.write_chunk(b"data: [DONE]\n\n")
        h.end_stream()


def _text_of(content: Any) -> str:
    """The text in a Responses/Anthropic content field (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            _text_of(p.get("text") or p.get("content")) for p in content if isinstance(p, dict)
        )
    return ""


class CompatApi:
    """``/v1/responses`` (stateless, Ollama >= 0.13.3) and Anthropic ``/v1/messages``.

    Text in, text out (no tools), in the shapes and event sequences those APIs define; the
    generation is the stand-in's usual one, so loads, slots and keep-alive behave alike.
    """

    def __init__(self, app: OllamaStandin) -> None:
        self.app = app

    def _generate(self, h: Handler, body: dict[str, Any], prompt: str, limit: Any) -> Generation:
        model = self.app.ollama.require(body)
        return self.app.start_generation(
            model,
            prompt,
            self.app.settings.keep_alive_s,
            {"num_predict": limit} if limit else {},
            None,
            h.client_gone,
        )

    @staticmethod
    def _event(h: Handler, name: str, obj: dict[str, Any]) -> None:
        h.write_chunk(
            f"event: {name}\ndata: ".encode() + json.dumps({"type": name, **obj}).encode() + b"\n\n"
        )

    def responses(self, h: Handler) -> None:
        body = h._body()
        items = body.get("input")
        prompt = (
            items
            if isinstance(items, str)
            else "\n".join(_text_of(i.get("content")) for i in items or [] if isinstance(i, dict))
        )
        if body.get("instructions"):
            prompt = f"{body['instructions']}\n{prompt}"
        gen = self._generate(h, body, prompt, body.get("max_output_tokens"))
        ident = f"resp_{int(time.time() * 1000) % 1000000}"
        response: dict[str, Any] = {
            "id": ident, "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "model": body["model"], "output": [],
        }  # fmt: skip
        item: dict[str, Any] = {
            "id": "msg_" + ident[5:], "type": "message", "status": "in_progress",
            "role": "assistant", "content": [],
        }  # fmt: skip
        try:
            if body.get("stream"):
                h.start_stream("text/event-stream")
                self._event(h, "response.created", {"response": response})
                self._event(h, "response.output_item.added", {"output_index": 0, "item": item})
                pieces = []
                for token, _ in self.app.emit(gen):
                    pieces.append(token)
                    self._event(h, "response.output_text.delta",
                                {"item_id": item["id"], "output_index": 0, "content_index": 0,
                                 "delta": token})  # fmt: skip
                text = "".join(pieces)
            else:
                text = "".join(token for token, _ in self.app.emit(gen))
            part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
            item = {**item, "status": "completed", "content": [part]}
            used = {"input_tokens": count_tokens(prompt), "output_tokens": len(gen.tokens)}
            used["total_tokens"] = used["input_tokens"] + used["output_tokens"]
            response = {**response, "status": "completed", "output": [item], "usage": used}
            if body.get("stream"):
                self._event(h, "response.output_item.done", {"output_index": 0, "item": item})
                self._event(h, "response.completed", {"response": response})
                h.end_stream()
            else:
                h.send_json(200, response)
        finally:
            self.app.scheduler.release(gen.lease)

    def messages(self, h: Handler) -> None:
        body = h._body()
        if not isinstance(body.get("max_tokens"), int):
            raise ApiError(400, "max_tokens is required")
        prompt = "\n".join(
            _text_of(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict)
        )
        if body.get("system"):
            prompt = f"{_text_of(body['system'])}\n{prompt}"
        gen = self._generate(h, body, prompt, body["max_tokens"])
        message: dict[str, Any] = {
            "id": f"msg_{int(time.time() * 1000) % 1000000}", "type": "message",
            "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": count_tokens(prompt), "output_tokens": 0},
        }  # fmt: skip
        try:
            if body.get("stream"):
                h.start_stream("text/event-stream")
                self._event(h, "message_start", {"message": message})
                block = {"type": "text", "text": ""}
                self._event(h, "content_block_start", {"index": 0, "content_block": block})
                for token, _ in self.app.emit(gen):
                    delta = {"type": "text_delta", "text": token}
                    self._event(h, "content_block_delta", {"index": 0, "delta": delta})
                self._event(h, "content_block_stop", {"index": 0})
                stop = "max_tokens" if gen.done_reason == "length" else "end_turn"
                end: dict[str, Any] = {"delta": {"stop_reason": stop, "stop_sequence": None}}
                end["usage"] = {"output_tokens": len(gen.tokens)}
                self._event(h, "message_delta", end)
                self._event(h, "message_stop", {})
                h.end_stream()
                return
            text = "".join(token for token, _ in self.app.emit(gen))
            message["content"] = [{"type": "text", "text": text}]
            message["stop_reason"] = "max_tokens" if gen.done_reason == "length" else "end_turn"
            message["usage"]["output_tokens"] = len(gen.tokens)
            h.send_json(200, message)
        finally:
            self.app.scheduler.release(gen.lease)


class Puller:
    """``/api/pull``: simulated download with Ollama's progress events. Concurrent pulls of
    one model share the download (the second waits for the first, then succeeds)."""

    def __init__(self, app: OllamaStandin) -> None:
        self.app = app
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.pull_counts: dict[str, int] = {}

    def pull(self, name: str, model: ModelInfo | None) -> Iterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        if model is None:
            raise ApiError(500, "pull model manifest: file does not exist")
        with self._guard:
            lock = self._locks.setdefault(model.name, threading.Lock())
        digest = f"sha256:{model.digest}"
        with lock:
            if self.app.store.get(model.name) is None:
                self.pull_counts[model.name] = self.pull_counts.get(model.name, 0) + 1
                rate = self.app.settings.pull_mb_per_s * MB
                step = max(1, model.size // 10)
                for completed in [*range(0, model.size, step), model.size]:
                    yield {
                        "status": f"pulling {model.digest[:12]}",
                        "digest": digest,
                        "total": model.size,
                        "completed": completed,
                    }
                    if rate > 0 and completed < model.size:
                        time.sleep(step / rate)
                self.app.store.save(model)
            else:
                yield {
                    "status": f"pulling {model.digest[:12]}",
                    "digest": digest,
                    "total": model.size,
                    "completed": model.size,
                }
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        yield {"status": "success"}


INFERENCE_PATHS = {"/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions"}
INFERENCE_PATHS |= {"/v1/responses", "/v1/messages"}
FAULT_MODES = ("ok", "hang", "500")


class OllamaStandin:
    """The server: settings + catalog + store + scheduler + HTTP routes."""

    def __init__(
        self, settings: Settings, catalog: Catalog | None = None, verbose: bool = False
    ) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.load(settings.catalog_source)
        self.store = ModelStore(settings.models_dir)
        self.scheduler = Scheduler(settings)
        self.puller = Puller(self)
        self.verbose = verbose
        self.ollama = OllamaApi(self)
        self.openai = OpenAiApi(self)
        self.compat = CompatApi(self)
        self._stop = threading.Event()
        self.routes: dict[tuple[str, str], Callable[[Handler], None]] = {
            ("GET", "/"): self.ollama.root,
            ("GET", "/api/version"): self.ollama.version,
            ("GET", "/api/tags"): self.ollama.tags,
            ("GET", "/api/ps"): self.ollama.ps,
            ("POST", "/api/show"): self.ollama.show,
            ("POST", "/api/pull"): self.ollama.pull,
            ("DELETE", "/api/delete"): self.ollama.delete,
            ("POST", "/api/chat"): self.ollama.chat,
            ("POST", "/api/generate"): self.ollama.generate,
            ("POST", "/api/embed"): self.ollama.embed,
            ("POST", "/api/embeddings"): self.ollama.embeddings,
            ("GET", "/v1/models"): self.openai.models,
            ("POST", "/v1/chat/completions"): self.openai.chat,
            ("POST", "/v1/completions"): self.openai.completions,
            ("POST", "/v1/embeddings"): self.openai.embeddings,
            ("POST", "/v1/responses"): self.compat.responses,
            ("POST", "/v1/messages"): self.compat.messages,
            ("GET", "/standin/stats"): self.stats,
            ("POST", "/standin/faults"): self.set_faults,
        }
        self.fault_mode = "ok"
        self.inference_requests = 0
        self.not_found = 0  # requests for paths Ollama does not have (stand-in counter)
        handler = type("BoundHandler", (Handler,), {"app": self})
        self.httpd = HttpServer((settings.host, settings.port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def set_faults(self, h: Handler) -> None:
        """Stand-in only: switch fault injection (``{"mode": "ok" | "hang" | "500"}``)."""
        mode = h._body().get("mode", "ok")
        if mode not in FAULT_MODES:
            raise ApiError(400, f"mode: expected one of {', '.join(FAULT_MODES)}")
        self.fault_mode = mode
        h.send_json(200, {"mode": mode})

    def inject_fault(self, h: Handler) -> None:
        """Stand-in only: poisoned content, a hung server or a 500 on everything."""
        self.inference_requests += 1
        if self.settings.poison and self.settings.poison.encode() in h.raw_body:
            raise ApiError(500, "stand-in poison: this request's content breaks the backend")
        if self.fault_mode == "500":
            raise ApiError(500, "stand-in fault: every inference request fails")
        while self.fault_mode == "hang" and not self._stop.is_set():
            if h.client_gone():
                raise ClientGone
            time.sleep(0.05)

    def stats(self, h: Handler) -> None:
        """Stand-in only: counters for tests (loads per model, unloads, pulls, rejections)."""
        sched = self.scheduler
        with sched.cond:
            h.send_json(
                200,
                {
                    **sched.stats,
                    "load_counts": dict(sched.load_counts),
                    "pending": sched.pending,
                    "queued": sched.queued,
                    "slots_in_use": {n: r.active for n, r in sched.runners.items()},
                    "pull_counts": self.puller.pull_counts,
                    "inference_requests": self.inference_requests,
                    "not_found": self.not_found,
                    "fault_mode": self.fault_mode,
                },
            )

    def start_generation(
        self,
        model: ModelInfo,
        prompt: str,
        keep_alive: float,
        options: dict[str, Any],
        tools: list[dict[str, Any]] | None,
        cancelled: Callable[[], bool] = never_cancelled,
    ) -> Generation:
        started = time.monotonic()
        # read every option before taking a slot: a bad one is a 400, never a leaked slot
        num_ctx = _int_option(options, "num_ctx")
        ctx = num_ctx if num_ctx else None
        limit = _int_option(options, "num_predict")
        natural = options.get("standin_tokens")
        tokens, reason = fake_tokens(prompt, limit, natural if isinstance(natural, int) else None)
        try:
            tool_call = fake_tool_call(tools) if tools and "tools" in model.capabilities else None
        except (AttributeError, KeyError, TypeError):
            raise ApiError(400, "invalid tools") from None
        if tool_call:
            tokens, reason = [], "stop"
        speed = options.get("standin_tokens_per_s")
        speed = float(speed) if isinstance(speed, int | float) and speed > 0 else None
        lease = self.scheduler.acquire(model, keep_alive, ctx, cancelled)
        return Generation(model, prompt, tokens, reason, lease, started, tool_call, speed)

    def emit(self, gen: Generation) -> Iterator[tuple[str, float]]:
        """Yield (token, seconds spent) at STANDIN_TOKENS_PER_S."""
        rate = gen.tokens_per_s or self.settings.tokens_per_s
        delay = 1 / rate if rate > 0 else 0.0
        for token in gen.tokens:
            if delay:
                time.sleep(delay)
            yield token, delay

    def _expiry_loop(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(min(self.scheduler.expire_idle(), 0.5))

    def serve_forever(self) -> None:
        reaper = threading.Thread(target=self._expiry_loop, name="keepalive", daemon=True)
        reaper.start()
        gpus = self.settings.gpu_vram_mb
        log(f"Listening on {self.settings.host}:{self.port} (version {VERSION}, STAND-IN)")
        log(
            f'inference compute gpus={len(gpus)} total_vram="{sum(gpus)} MiB"'
            if gpus
            else "no compatible GPUs were discovered"
        )
        try:
            self.httpd.serve_forever(poll_interval=0.1)
        finally:
            self._stop.set()

    def shutdown(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- in-process helper


@dataclass
class RunningStandin:
    """A stand-in serving on 127.0.0.1 in a background thread. ``url`` has no trailing slash;
    ``app`` gives tests the scheduler (``app.scheduler.load_counts``). Unpacks as
    ``url, stop = start_in_thread()`` and works as a context manager."""

    url: str
    app: OllamaStandin
    thread: threading.Thread
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def stop(self) -> None:
        self.app.shutdown()
        self.thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.url, self.stop))

    def __enter__(self) -> RunningStandin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    *,
    vram_mb: int | list[int] = 24576,
    models: list[str] | None = None,
    catalog: list[dict[str, Any]] | None = None,
    keep_alive: str | float = "5m",
    max_loaded_models: int = 0,
    num_parallel: int = 1,
    max_queue: int = 512,
    context_length: int = 4096,
    load_ms_per_gb: float = 50.0,
    tokens_per_s: float = 0.0,
    pull_mb_per_s: float = 0.0,
    models_dir: str | Path | None = None,
    verbose: bool = False,
) -> RunningStandin:
    """Start an Ollama stand-in on 127.0.0.1:<free port> with fast test timings.

    ``models`` are "already pulled" (from ``catalog``, default the built-in one).
    ``vram_mb`` is one GPU's VRAM, a list of per-GPU values, or 0 for a CPU-only host.
    Example::

        url, stop = start_in_thread(vram_mb=8192, models=["llama3.2:1b", "qwen2.5:7b"])
    """
    tmp = None
    if models_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ollama-standin-")
        models_dir = tmp.name
    gpus = vram_mb if isinstance(vram_mb, list) else ([vram_mb] if vram_mb else [])
    settings = Settings(
        host="127.0.0.1",
        port=0,
        models_dir=Path(models_dir),
        keep_alive_s=parse_duration(keep_alive),
        max_loaded_models=max_loaded_models,
        num_parallel=num_parallel,
        max_queue=max_queue,
        context_length=context_length,
        gpu_vram_mb=gpus,
        load_ms_per_gb=load_ms_per_gb,
        tokens_per_s=tokens_per_s,
        pull_mb_per_s=pull_mb_per_s,
    )
    app = OllamaStandin(settings, Catalog.load(catalog), verbose=verbose)
    for name in models or []:
        model = app.catalog.get(name)
        if model is None:
            raise ValueError(f"start_in_thread: model {name!r} is not in the catalog")
        app.store.save(model)
    thread = threading.Thread(target=app.serve_forever, name="ollama-standin", daemon=True)
    thread.start()
    return RunningStandin(f"http://127.0.0.1:{app.port}", app, thread, tmp)


# --------------------------------------------------------------------------- CLI


def _client_url() -> str:
    host, port = parse_host(os.environ.get("OLLAMA_HOST"))
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{port}"


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        _client_url() + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    return urllib.request.urlopen(req, timeout=600)


def _human_size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _cli_error(exc: Exception) -> int:
    if isinstance(exc, urllib.error.HTTPError):
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        print(f"Error: {message}", file=sys.stderr)
    else:
        print("Error: could not connect to ollama app, is it running?", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ollama", description="Ollama STAND-IN (simulated)")
    parser.add_argument("-v", "--version", action="store_true", help="show version information")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="start the server")
    serve.add_argument("--verbose", action="store_true", help="log every HTTP request")
    sub.add_parser("list", aliases=["ls"], help="list models")
    sub.add_parser("ps", help="list running models")
    for name, text in (
        ("pull", "pull a model"),
        ("rm", "remove a model"),
        ("stop", "stop a running model"),
        ("show", "show model information"),
    ):
        sub.add_parser(name, help=text).add_argument("model")
    args = parser.parse_args(argv)

    if args.version:
        try:
            with _call("GET", "/api/version") as resp:
                print(f"ollama version is {json.load(resp)['version']}")
        except (urllib.error.URLError, OSError):
            print("Warning: could not connect to a running Ollama instance")
            print(f"Warning: client version is {VERSION}")
        return 0
    if args.command == "serve":
        try:
            app = OllamaStandin(Settings.from_env(), verbose=args.verbose)
        except (ValueError, OSError) as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        logging.basicConfig(
            level=logging.INFO, format="time=%(asctime)s level=%(levelname)s msg=%(message)s"
        )
        with contextlib.suppress(KeyboardInterrupt):
            app.serve_forever()
        return 0
    try:
        return _run_client(args)
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        return _cli_error(exc)


def _run_client(args: argparse.Namespace) -> int:
    if args.command in ("list", "ls"):
        with _call("GET", "/api/tags") as resp:
            models = json.load(resp)["models"]
        print(f"{'NAME':<32}{'ID':<16}{'SIZE':<10}MODIFIED")
        for m in models:
            print(
                f"{m['name']:<32}{m['digest'][:12]:<16}{_human_size(m['size']):<10}"
                f"{m['modified_at']}"
            )
    elif args.command == "ps":
        with _call("GET", "/api/ps") as resp:
            models = json.load(resp)["models"]
        print(f"{'NAME':<32}{'ID':<16}{'SIZE':<10}{'PROCESSOR':<12}UNTIL")
        for m in models:
            gpu = round(100 * m["size_vram"] / m["size"]) if m["size"] else 0
            where = "100% GPU" if gpu == 100 else f"{100 - gpu}%/{gpu}% CPU/GPU"
            print(
                f"{m['name']:<32}{m['digest'][:12]:<16}{_human_size(m['size']):<10}"
                f"{where:<12}{m['expires_at']}"
            )
    elif args.command == "pull":
        with _call("POST", "/api/pull", {"model": args.model}) as resp:
            for line in resp:
                event = json.loads(line)
                if "error" in event:
                    print(f"Error: {event['error']}", file=sys.stderr)
                    return 1
                if event.get("total"):
                    pct = 100 * event.get("completed", 0) // event["total"]
                    print(f"{event['status']} {pct:3d}% {_human_size(event['total'])}")
                else:
                    print(event["status"])
    elif args.command == "rm":
        with _call("DELETE", "/api/delete", {"model": args.model}):
            print(f"deleted '{args.model}'")
    elif args.command == "stop":
        with _call("POST", "/api/generate", {"model": args.model, "keep_alive": 0}):
            pass
    elif args.command == "show":
        with _call("POST", "/api/show", {"model": args.model}) as resp:
            info = json.load(resp)
        print(json.dumps(info["details"], indent=2))
    else:
        print("Usage: ollama [serve|list|ps|pull|rm|stop|show] ... (stand-in)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
