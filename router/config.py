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

import re
import socket
import stat
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from modelfleet.router.cors import OLLAMA_DEFAULT_ORIGINS

BackendKind = Literal["ollama", "llama-swap", "llama-server", "openai"]


class _Strict(BaseModel):
    # hide_input_in_errors: a validation error never quotes a value (it may be a secret)
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


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

    @field_validator("api_key")
    @classmethod
    def _api_key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        return _not_blank(value, "api_key")

    @property
    def host_name(self) -> str:
        return self.host or self.name

    def secret(self) -> str | None:
        """The key sent to this backend as ``Authorization: Bearer``, if any."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_file is not None:
            return _read_secret(self.api_key_file, f"backends.{self.name}.api_key_file")
        return None


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
    error_rate_window_s: float = Field(
        default=60.0, gt=0, description="window of the error-rate rule (5xx and timeouts)"
    )
    error_rate_requests: int = Field(
        default=20, ge=2, description="the rule looks at this many latest requests at most"
    )
    error_rate_threshold: float = Field(
        default=0.5, gt=0, le=1, description="share of bad answers in the window that ejects"
    )
    error_rate_min_errors: int = Field(
        default=5, ge=1, description="distinct failed requests needed before the rule applies"
    )


class ManagementConfig(_Strict):
    """Who may change what the fleet holds (pull, delete, copy, create, push, unload, pin)."""

    clients_may_manage: bool = Field(
        default=False, description="client keys may manage models too (default: admin token only)"
    )
    keep_alive_min_s: float = Field(default=60.0, ge=0, description="clamp for client keep_alive")
    keep_alive_max_s: float = Field(default=3600.0, gt=0, description="clamp for client keep_alive")

    @model_validator(mode="after")
    def _ordered(self) -> ManagementConfig:
        if self.keep_alive_min_s > self.keep_alive_max_s:
            raise ValueError("keep_alive_min_s is larger than keep_alive_max_s")
        return self


class PolicyConfig(_Strict):
    """Knobs of ``router/policy.py`` (see ``PolicyParams``)."""

    headroom_mb: int = Field(default=0, ge=0, description="VRAM kept free on every host")
    default_load_s: float = Field(default=10.0, gt=0, description="until a load was observed")
    default_service_s: float = Field(default=5.0, gt=0, description="until a request was seen")
    scale_out: bool = True
    allow_spill: bool = True
    max_hold_s: float = Field(
        default=20.0,
        ge=0,
        description="hold a cold request rather than evict hotter models, or while its host loads",
    )
    demand_half_life_s: float = Field(default=300.0, gt=0)


class SharedStateConfig(_Strict):
    """Router replicas sharing soft state through Redis (``router/shared.py``).

    Absent: one router on its own. The password lives in ``password_file`` (mode 0600),
    never in ``url``, so it stays out of this config's repr, logs and errors.
    """

    url: str = Field(pattern=r"^rediss?://", description="redis://host:port/db, no password")
    password_file: Path | None = None
    timeout_ms: int = Field(
        default=50, ge=1, le=10_000, description="bound on any Redis call in the request path"
    )
    replica: str = Field(
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="this replica's name in leases and events (default: hostname)",
    )
    lease_ttl_ms: int = Field(
        default=10_000, ge=100, description="a load lease's expiry; renewed while the load runs"
    )

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, value: str) -> str:
        # redis-py takes one from the query string too (redis://host/0?password=...)
        parts = urlsplit(value)
        if parts.password is not None or "password" in parse_qs(parts.query):
            raise ValueError("has a password in it: put the password in password_file instead")
        return value

    def password(self) -> str | None:
        """The Redis password from ``password_file`` (which nobody but its owner may read)."""
        if self.password_file is None:
            return None
        key = "shared_state.password_file"
        try:
            mode = self.password_file.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {self.password_file}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{key}: {self.password_file} is open to group or others "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
            )
        secret = _read_secret(self.password_file, key)
        if not secret:
            raise ConfigError(f"{key}: {self.password_file} is empty")
        return secret


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
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    max_retries: int = Field(default=2, ge=0, description="other backends tried before 1st byte")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    stall_timeout_s: float = Field(
        default=120.0, gt=0, description="silence mid-stream before the backend counts as stalled"
    )
    first_byte_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="wait for a resident model's first streamed byte (load_timeout_s: loads)",
    )
    stream_upstream: bool = Field(
        default=True,
        description="ask backends for a stream even when the client wants one answer, so "
        "first_byte_timeout_s bounds every request (costs router CPU per token)",
    )
    client_write_timeout_s: float = Field(
        default=30.0, gt=0, description="a client that reads nothing this long is cut off"
    )
    management: ManagementConfig = Field(default_factory=ManagementConfig)
    access_log: str | None = Field(default=None, description="JSONL file; '-' = stdout")
    recent_decisions: int = Field(default=200, ge=0, description="kept for admin/dashboard")
    cors_origins: list[str] = Field(
        default_factory=lambda: list(OLLAMA_DEFAULT_ORIGINS),
        description="browser origins allowed to call the front APIs ('*' = any); "
        "default: Ollama's (localhost, 127.0.0.1, 0.0.0.0 any port; app://, file://, tauri://)",
    )
    shared_state: SharedStateConfig | None = Field(
        default=None, description="replicas sharing soft state through Redis; absent: alone"
    )

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        # ASCII digits only (int() reads others too); port 0 is any free port
        if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise ValueError(
                f"{value!r} is not host:port (e.g. 0.0.0.0:11434, or [::]:11434 for IPv6)"
            )
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        return _not_blank(value, "admin_token")

    @field_validator("api_keys")
    @classmethod
    def _api_keys_not_blank(cls, values: list[SecretStr]) -> list[SecretStr]:
        for i, value in enumerate(values):
            _not_blank(value, f"api_keys[{i}]")
        return values

    @model_validator(mode="after")
    def _unique_backend_names(self) -> RouterConfig:
        seen: set[str] = set()
        for backend in self.backends:
            if backend.name in seen:
                raise ValueError(f"duplicate backend name {backend.name!r}")
            seen.add(backend.name)
        return self

    @model_validator(mode="after")
    def _aliases_name_one_model(self) -> RouterConfig:
        """An alias is another name of one model, fleet-wide: the router books both names as
        that model (one residency, one queue), so it may not also name another model."""
        names = {entry.name for backend in self.backends for entry in backend.models}
        meaning: dict[str, tuple[str, str]] = {}  # alias -> (model, backend)
        for backend in self.backends:
            for entry in backend.models:
                for alias in entry.aliases:
                    if alias in names and alias != entry.name:
                        raise ValueError(
                            f"backend {backend.name!r}, model {entry.name!r}: alias {alias!r} "
                            f"is also the name of a model"
                        )
                    model, where = meaning.setdefault(alias, (entry.name, backend.name))
                    if model != entry.name:
                        raise ValueError(
                            f"backend {backend.name!r}, model {entry.name!r}: alias {alias!r} "
                            f"already names model {model!r} on backend {where!r}"
                        )
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    def admin_secret(self) -> str | None:
        """The admin token, from ``admin_token`` or ``admin_token_file``."""
        if self.admin_token is not None:
            return self.admin_token.get_secret_value()
        if self.admin_token_file is not None:
            token = _read_secret(self.admin_token_file, "admin_token_file")
            if not token:
                raise ConfigError(f"admin_token_file: {self.admin_token_file} is empty")
            return token
        return None

    def client_keys(self) -> list[str]:
        """Client API keys from ``api_keys`` and ``api_keys_file`` (one per line)."""
        keys = [k.get_secret_value() for k in self.api_keys]
        if self.api_keys_file is not None:
            text = _read_secret(self.api_keys_file, "api_keys_file")
            keys += [line.strip() for line in text.splitlines() if line.strip()]
        return keys


def _not_blank(value: SecretStr | None, key: str) -> SecretStr | None:
    """An empty key would let in anyone who sends an empty header: refuse it at load."""
    if value is not None and not value.get_secret_value().strip():
        raise ValueError(f"{key} is empty or whitespace; remove it or set a real secret")
    return value


def _read_secret(path: Path, key: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None


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
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc, path)}") from None
    raw = {} if raw is None else raw  # an empty file: every default
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    try:
        return RouterConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc)}") from None


# keys whose values may be secrets (a URL may carry credentials)
_SECRET_KEYS = frozenset({"admin_token", "api_keys", "api_key", "url"})


def validation_problems(exc: ValidationError) -> str:
    """Each problem as ``key.path: message``, without the offending values (they may be
    secrets). Example: ``"queue.deadline_s: Input should be greater than 0"``.

    Pydantic's messages never quote the input; ours quote names (backends, models,
    aliases), and the allowed values of a choice are the schema's. Under a key that may hold
    a secret, quoted fragments are dropped all the same.
    """
    problems = []
    for err in exc.errors(include_input=False, include_context=False):
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        # the pattern a string must match is the schema's, never the operator's value
        secret = bool(_SECRET_KEYS & {str(p) for p in err["loc"]})
        secret = secret and err["type"] != "string_pattern_mismatch"
        problems.append(f"{where}: {_redacted(err['msg']) if secret else err['msg']}")
    return "; ".join(problems)


_KEY = re.compile(r"^\s*(?:-\s*)?([A-Za-z_][A-Za-z0-9_.-]*)\s*:")


def yaml_problem(exc: yaml.YAMLError, path: Path) -> str:
    """Where a YAML error is (line, column, key), never the text of the line: it may be a secret.

    PyYAML's own message quotes the offending line, token and all.
    """
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return type(exc).__name__
    mark = exc.problem_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    key = _key_at(path, mark.line)
    if key:
        where += f" (under key {key!r}; values not shown)"
    problem = exc.problem or "syntax error"
    return f"{where}: {_redacted(problem)}"


def _key_at(path: Path, line: int) -> str | None:
    """The mapping key on ``line`` or the nearest one above it."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    known = _field_names()
    for text in reversed(lines[: line + 1]):
        match = _KEY.match(text)
        if match and match.group(1) in known:  # a secret may look like "key: value" too
            return match.group(1)
    return None


def _field_names() -> set[str]:
    models: list[type[BaseModel]] = [
        RouterConfig,
        BackendConfig,
        ModelEntry,
        QueueConfig,
        HealthConfig,
        PolicyConfig,
        ManagementConfig,
        SharedStateConfig,
    ]
    return {name for model in models for name in model.model_fields}


def _redacted(message: str) -> str:
    """Drop quoted fragments (a scanner error quotes the character or token it choked on)."""
    return re.sub(r"(['\"]).*?\1", "'…'", message)
