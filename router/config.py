"""The router's configuration: one YAML file, validated by pydantic.

This schema is the contract between the deploy (which renders ``router.yaml``
from the whole fleet's plan, see ``templates/router/router.yaml.j2``) and the
router (which reads it). A ten-line file is enough to run the router in front
of existing servers::

    listen: 127.0.0.1:11434
    admin_token: change-me
    backends:
      - name: gpu-01
        url: http://127.0.0.1:21434
        kind: ollama
        host: gpu-01
        vram_mb: 24576
        slots: 2

Secrets (``admin_token``, ``api_keys``, backend ``api_key``) are ``SecretStr``
so they never show up in a repr, a log line or a validation error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

BackendKind = Literal["ollama", "llama-swap", "llama-server", "openai"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    """A model a backend can serve, as the fleet plan knows it.

    ``name`` is what clients ask for; ``backend_model`` is the name the backend
    itself uses (an Ollama tag, a llama-swap model id) when it differs.
    """

    name: str
    backend_model: str | None = None
    aliases: list[str] = Field(default_factory=list)
    size_mb: int = Field(default=0, ge=0, description="weights in VRAM")
    kv_mb: int = Field(default=0, ge=0, description="KV cache for ctx x slots")
    ctx: int | None = Field(default=None, gt=0)
    slots: int | None = Field(default=None, gt=0, description="overrides the backend's slots")

    @property
    def upstream_name(self) -> str:
        return self.backend_model or self.name


class BackendConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    url: str = Field(pattern=r"^https?://")
    kind: BackendKind = "ollama"
    host: str | None = Field(default=None, description="backends on one host share its VRAM")
    vram_mb: int = Field(default=0, ge=0, description="0 = unknown, never limit placement")
    slots: int = Field(default=1, ge=1, description="parallel requests per loaded model")
    max_loaded: int | None = Field(default=None, ge=1, description="models resident at once")
    models: list[ModelEntry] = Field(
        default_factory=list, description="catalog; empty = learn the list from the backend"
    )
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    weight: float = Field(default=1.0, gt=0)
    drained: bool = False

    @property
    def host_name(self) -> str:
        return self.host or self.name


class QueueConfig(_Strict):
    max_per_model: int = Field(default=64, ge=0)
    deadline_s: float = Field(default=120.0, gt=0)
    full_status: Literal[429, 503] = 429
    retry_after_s: int = Field(default=2, ge=1)


class HealthConfig(_Strict):
    interval_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=3.0, gt=0)
    fail_threshold: int = Field(default=2, ge=1)
    success_threshold: int = Field(default=1, ge=1)
    max_backoff_s: float = Field(default=60.0, gt=0)


class RouterConfig(_Strict):
    listen: str = "127.0.0.1:11434"
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    api_keys: list[SecretStr] = Field(default_factory=list)
    api_keys_file: Path | None = None
    backends: list[BackendConfig] = Field(default_factory=list)
    refresh_interval_s: float = Field(default=2.0, gt=0)
    load_timeout_s: float = Field(default=300.0, gt=0)
    max_body_mb: float = Field(default=32.0, gt=0)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    fleet: str | None = Field(default=None, description="name of the inventory it came from")

    @model_validator(mode="after")
    def _unique_backend_names(self) -> RouterConfig:
        seen: set[str] = set()
        for backend in self.backends:
            if backend.name in seen:
                raise ValueError(f"duplicate backend name {backend.name!r}")
            seen.add(backend.name)
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the key."""


def load_config(path: str | Path) -> RouterConfig:
    """Read and validate a router YAML file.

    Example::

        cfg = load_config("/etc/modelfleet/router.yaml")
        cfg.backends[0].url
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    try:
        return RouterConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors(include_input=False)
        )
        raise ConfigError(f"{path}: {problems}") from None
