"""The fleet model: a typed, validated view of a pyinfra inventory and its group_data.

The inventory is read with pyinfra's own loader, so the data planned here is exactly the data
pyinfra hands to ``deploy.py``. Every problem is collected first and raised as one
:class:`FleetError` whose lines name the file, the host and the key, before any host is touched.

Two ways in:

- ``load_fleet("inventory/example.py")`` on the controller (CLI, tests);
- ``fleet_from_inventory(inventory)`` inside a running deploy (``from pyinfra import inventory``).

Example::

    fleet = load_fleet("inventory/example.py")
    fleet.host("gpu-nv-01").backend.kind      # "ollama"
    fleet.catalog["llama3.1-8b"].ollama       # "llama3.1:8b"

Keys a host can carry (from its own data, its groups' data, or ``group_data/all.py``) are
listed in ``HOST_KEYS`` and ``FLEET_KEYS``; ``docs/inventory.md`` explains each one.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import ipaddress
import os
import re
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from modelfleet.deploy.hardware.parsers import GPU_EXAMPLE, Gpu, expand_gpu_overrides

BackendKindName = Literal["ollama", "llama-swap", "llama-server"]
InstallMode = Literal["native", "container"]

DEFAULT_PORTS: dict[str, int] = {"ollama": 11434, "llama-swap": 8080, "llama-server": 8080}

# Group that marks router hosts.
ROUTER_GROUP = "router"

# Keys whose prefix belongs to a role or a connector: never flagged as typos of ours.
FOREIGN_PREFIXES = (
    "ssh_",
    "docker_",
    "podman_",
    "local_",
    "chroot_",
    "winrm_",
    "ollama_",
    "llama_swap_",
    "llama_server_",
    "llama_cpp_",
    "router_",
    "nvidia_",
    "rocm_",
    "container_",
    "gpu_",
    "redis_state_",
    "keepalived_",
    "_",
)


class FleetError(Exception):
    """Invalid inventory data. ``problems`` holds one line per problem (file: host: key: what)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid fleet inventory:\n  " + "\n  ".join(problems)
            if len(problems) > 1
            else problems[0]
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- catalog


class GgufSource(_Strict):
    """Where llama-swap and llama-server get a model: one GGUF file, checked by sha256."""

    url: str = Field(pattern=r"^https?://")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    file: str = Field(pattern=r"^[A-Za-z0-9._+-]+\.gguf$", description="file name on the host")


class ModelSpec(_Strict):
    """One catalog entry: the model named once, with how every backend kind gets it.

    ``size_mb`` is the weights' footprint in VRAM; the KV cache is ``kv_mb_per_1k_ctx`` per
    1024 tokens of context per slot (for f16 KV: 2 x layers x kv_heads x head_dim x 2 bytes
    per token).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    ollama: str | None = Field(default=None, description="Ollama tag, e.g. llama3.1:8b")
    gguf: GgufSource | None = None
    size_mb: int = Field(gt=0)
    kv_mb_per_1k_ctx: float = Field(ge=0)
    ctx: int = Field(default=4096, gt=0)
    slots: int = Field(default=1, ge=1)
    groups: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    ttl_s: int | None = Field(default=None, ge=0, description="idle unload; default keep_alive")
    llama_args: tuple[str, ...] = Field(default=(), description="extra llama-server flags")

    def kv_mb(self, slots: int | None = None) -> int:
        """KV cache for the full context on ``slots`` parallel slots (default: the model's)."""
        return round(self.kv_mb_per_1k_ctx * self.ctx / 1024 * (slots or self.slots))

    def need_mb(self, slots: int | None = None) -> int:
        """VRAM to hold this model with its KV cache (headroom is the instance's)."""
        return self.size_mb + self.kv_mb(slots)

    def served_by(self, kind: str) -> bool:
        return self.ollama is not None if kind == "ollama" else self.gguf is not None


# --------------------------------------------------------------------------- hosts


class BackendSpec(_Strict):
    """How a host serves models; from the ``backend*`` and tuning host-data keys."""

    kind: BackendKindName
    install: InstallMode = "native"
    port: int = Field(gt=0, lt=65536)
    bind: str = "0.0.0.0"
    models_dir: str
    keep_alive: str = "30m"
    max_loaded_models: int = Field(default=0, ge=0, description="0 = as many as fit")
    num_parallel: int | None = Field(default=None, ge=1)
    vram_headroom_mb: int = Field(default=1024, ge=0, description="kept free per GPU")
    ram_headroom_mb: int = Field(default=4096, ge=0, description="kept free on CPU-only hosts")
    instance_per_gpu: bool = False

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?[smh]?", value.strip()):
            raise ValueError(f"{value!r} is not a duration like 30m, 1h, 90s, 600 or -1")
        return value.strip()

    @model_validator(mode="after")
    def _container_only_for_ollama(self) -> BackendSpec:
        if self.install == "container" and self.kind != "ollama":
            raise ValueError(
                f"install: container is rendered for ollama only; {self.kind} installs natively"
            )
        return self


class HostSpec(_Strict):
    """One inventory host.

    ``name`` is the node name used everywhere downstream (router backend names, plan tables):
    the ``node_name`` key, else the pyinfra host name without a ``@connector/`` prefix.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    inventory_name: str
    address: str
    groups: tuple[str, ...]
    backend: BackendSpec | None = None
    router: bool = False
    models: tuple[str, ...] = Field(default=(), description="catalog names this host holds")
    gpus: tuple[Gpu, ...] | None = Field(default=None, description="the gpus: override")
    ram_mb: int | None = Field(default=None, gt=0)
    cpu_cores: int | None = Field(default=None, gt=0)


class Versions(_Strict):
    """Pinned versions of what the roles install."""

    # 0.14.0 is the first Ollama with both /v1/responses (0.13.3) and Anthropic /v1/messages;
    # from 0.14.0 on its Linux archive is .tar.zst (the Ollama role installs zstd).
    ollama: str = "0.14.1"
    # llama-swap passes /v1/messages on since #417 (2025-11-30); v247 (2026-08) is after its
    # mid-2026 rewrite, the code shared/reference/backends.md describes.
    llama_swap: str = "v247"
    # A label for the llama-server binary you supply (llama_server_binary_url or _path): the
    # llama.cpp release tag it was built from. /v1/responses and /v1/messages need a 2026 build.
    llama_cpp: str = "b11434"
    cuda_image: str = "docker.io/ollama/ollama:0.14.1"
    rocm_image: str = "docker.io/ollama/ollama:0.14.1-rocm"


class RouterSettings(_Strict):
    """The router's own settings (the backends come from the plan). Secrets only as files.

    ``port``/``bind`` make ``listen``; ``options`` holds any other ``RouterConfig`` key
    (``queue``, ``health``, ``policy``, ``max_retries`` ...), checked against RouterConfig when
    the fleet is loaded.
    """

    port: int = Field(default=11434, gt=0, lt=65536)
    bind: str = "0.0.0.0"
    admin_token_file: str | None = "/etc/modelfleet/admin-token"
    api_keys_file: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_data(cls, raw: dict[str, Any]) -> RouterSettings:
        """From the ``router`` key; raises ValueError naming a key that may not be set there."""
        from modelfleet.router.config import RouterConfig

        own = {k: raw[k] for k in ("port", "bind", "admin_token_file", "api_keys_file") if k in raw}
        options = {k: v for k, v in raw.items() if k not in own}
        for key, why in ROUTER_FORBIDDEN.items():
            if key in options:
                raise ValueError(f"router.{key}: {why}")
        settings = cls.model_validate({**own, "options": options})
        RouterConfig.model_validate(options)  # unknown keys and bad values fail here
        log = options.get("access_log")
        if log not in (None, "-") and not str(log).startswith("/"):
            raise ValueError(
                f"router.access_log: {log!r} is not an absolute path (the router runs from /): "
                "use '-' (the journal) or e.g. /var/log/modelfleet/access.jsonl"
            )
        return settings


ROUTER_FORBIDDEN = {
    "listen": "set router.port and router.bind instead",
    "backends": "the backends come from the plan",
    "fleet": "the fleet name comes from fleet_name",
    "admin_token": "secrets never go in inventory data; use admin_token_file",
    "api_keys": "secrets never go in inventory data; use api_keys_file",
}


class Fleet(_Strict):
    """The whole validated inventory."""

    name: str
    source: str = Field(description="the inventory file it was read from")
    hosts: tuple[HostSpec, ...]
    catalog: dict[str, ModelSpec]
    versions: Versions = Field(default_factory=Versions)
    router: RouterSettings = Field(default_factory=RouterSettings)
    placement_strict: bool = True
    router_state: str | None = Field(
        default=None, description="node name of the host that runs Redis for router replicas"
    )
    router_vip: str | None = Field(
        default=None, description="virtual IP/prefix keepalived keeps on one router host"
    )
    warnings: tuple[str, ...] = Field(default=(), description="worth a look, not fatal")

    def host(self, name: str) -> HostSpec:
        for host in self.hosts:
            if name in (host.name, host.inventory_name):
                return host
        raise KeyError(f"no host {name!r} in fleet {self.name!r}")

    @property
    def backend_hosts(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.backend is not None]

    @property
    def router_hosts(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.router]

    def models_for(self, host: HostSpec) -> list[ModelSpec]:
        """The host's model set: its ``models`` key plus catalog entries naming its groups."""
        names = list(host.models)
        for model in self.catalog.values():
            if set(model.groups) & set(host.groups) and model.name not in names:
                names.append(model.name)
        return [self.catalog[name] for name in names]


# --------------------------------------------------------------------------- loading

# Keys read per host: key -> default (None = not set).
HOST_KEYS: dict[str, Any] = {
    "node_name": None,
    "address": None,
    "backend": None,
    "backend_install": "native",
    "backend_port": None,
    "backend_bind": "0.0.0.0",
    "models_dir": None,
    "keep_alive": "30m",
    "max_loaded_models": 0,
    "num_parallel": None,
    "vram_headroom_mb": 1024,
    "ram_headroom_mb": 4096,
    "instance_per_gpu": False,
    "models": (),
    "gpus": None,
    "ram_mb": None,
    "cpu_cores": None,
}
# Keys that describe the whole fleet: every host must see the same value (group_data/all.py).
FLEET_KEYS: dict[str, Any] = {
    "fleet_name": None,
    "model_catalog": {},
    "versions": {},
    "router": {},
    "placement_strict": True,
    "router_state": None,
    "router_vip": None,
}
DEFAULT_MODELS_DIRS = {
    "ollama": "/var/lib/ollama/models",
    "llama-swap": "/var/lib/modelfleet/models",
    "llama-server": "/var/lib/modelfleet/models",
}


class _Sources:
    """Finds which file a key came from, so errors can name it."""

    def __init__(self, inventory: Any, inventory_file: str, group_data_dirs: Iterable[str]):
        self.inventory = inventory
        self.inventory_file = inventory_file
        self.group_files: dict[str, str] = {}
        for folder in group_data_dirs:
            for path in sorted(Path(folder).glob("*.py")):
                self.group_files[path.stem] = str(path)

    def of(self, host: Any, key: str) -> str:
        if key in self.inventory.get_host_data(host.name):
            return self.inventory_file
        for group in [*reversed(host.groups), "all"]:
            file = self.group_files.get(group)
            if file and re.search(rf"^{re.escape(key)}\s*[:=]", Path(file).read_text(), re.M):
                return file
        return self.inventory_file


def _node_name(host: Any, data: dict[str, Any]) -> str:
    if data.get("node_name"):
        return str(data["node_name"])
    return str(host.name).rsplit("/", 1)[-1]


def _msg(message: str) -> str:
    return message.removeprefix("Value error, ")


def _errors(exc: ValidationError, prefix: str) -> list[str]:
    lines = []
    for err in exc.errors(include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"{prefix}{'.' + loc if loc else ''}: {_msg(err['msg'])}")
    return lines


def _check_typos(data: dict[str, Any], where: str, problems: list[str]) -> None:
    known = set(HOST_KEYS) | set(FLEET_KEYS)
    for key in data:
        if key in known or key.startswith(FOREIGN_PREFIXES):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
        if close:
            problems.append(f"{where}: key {key!r}: unknown key (did you mean {close[0]!r}?)")


def _load_catalog(raw: Any, where: str, problems: list[str]) -> dict[str, ModelSpec]:
    catalog: dict[str, ModelSpec] = {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: key model_catalog: expected a mapping of name -> model")
        return catalog
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            problems.append(f"{where}: key model_catalog.{name}: expected a mapping")
            continue
        try:
            catalog[name] = ModelSpec.model_validate({"name": name, **entry})
        except ValidationError as exc:
            problems.extend(_errors(exc, f"{where}: key model_catalog.{name}"))
    named: dict[str, str] = {}  # alias -> the model it names (the router books them as one)
    for name, spec in catalog.items():
        for alias in spec.aliases:
            other = named.setdefault(alias, name)
            if alias in catalog or other != name:
                clash = "a model's name" if alias in catalog else f"an alias of {other!r}"
                problems.append(
                    f"{where}: key model_catalog.{name}.aliases: {alias!r} is also {clash}"
                )
    return catalog


def _host_spec(
    host: Any, data: dict[str, Any], sources: _Sources, problems: list[str]
) -> HostSpec | None:
    name = _node_name(host, data)

    def where(key: str) -> str:
        return f"{sources.of(host, key)}: host {name}: key {key}"

    value = {key: data.get(key, default) for key, default in HOST_KEYS.items()}
    before = len(problems)

    gpus = None
    if value["gpus"] is not None:
        if not isinstance(value["gpus"], list | tuple):
            problems.append(
                f"{where('gpus')}: expected a list of GPUs (got {value['gpus']!r}), e.g. "
                f"[{GPU_EXAMPLE}], or [] for none"
            )
        else:
            try:
                gpus = expand_gpu_overrides(value["gpus"])
            except ValueError as exc:
                problems.append(f"{where('gpus')}: {exc}")

    models = value["models"]
    if isinstance(models, str) or not isinstance(models, list | tuple):
        problems.append(f"{where('models')}: expected a list of catalog model names")
        models = ()

    backend = None
    if value["backend"] is not None:
        kind = value["backend"]
        raw_backend = {
            "kind": kind,
            "install": value["backend_install"],
            "port": value["backend_port"] or DEFAULT_PORTS.get(str(kind), 8080),
            "bind": value["backend_bind"],
            "models_dir": value["models_dir"] or DEFAULT_MODELS_DIRS.get(str(kind), "/var/lib"),
            "keep_alive": str(value["keep_alive"]),
            "max_loaded_models": value["max_loaded_models"],
            "num_parallel": value["num_parallel"],
            "vram_headroom_mb": value["vram_headroom_mb"],
            "ram_headroom_mb": value["ram_headroom_mb"],
            "instance_per_gpu": value["instance_per_gpu"],
        }
        key_of = {
            "kind": "backend",
            "install": "backend_install",
            "port": "backend_port",
            "bind": "backend_bind",
        }
        try:
            backend = BackendSpec.model_validate(raw_backend)
        except ValidationError as exc:
            for err in exc.errors(include_input=False):
                # The only whole-model check is about the install mode.
                field = str(err["loc"][0]) if err["loc"] else "install"
                problems.append(f"{where(key_of.get(field, field))}: {_msg(err['msg'])}")

    address = value["address"] or data.get("ssh_hostname") or str(host.name).rsplit("/", 1)[-1]
    try:
        spec = HostSpec.model_validate(
            {
                "name": name,
                "inventory_name": host.name,
                "address": str(address),
                "groups": tuple(host.groups),
                "backend": backend,
                "router": ROUTER_GROUP in host.groups,
                "models": tuple(models),
                "gpus": gpus,
                "ram_mb": value["ram_mb"],
                "cpu_cores": value["cpu_cores"],
            }
        )
    except ValidationError as exc:
        for err in exc.errors(include_input=False):
            field = str(err["loc"][0]) if err["loc"] else "host"
            key = "node_name" if field == "name" else field
            problems.append(f"{where(key)}: {err['msg']}")
        return None
    return spec if len(problems) == before else None


def fleet_from_inventory(
    inventory: Any,
    inventory_file: str = "inventory",
    group_data_dirs: Iterable[str] = (),
) -> Fleet:
    """Build the Fleet from a loaded ``pyinfra.api.Inventory`` (also from inside a deploy).

    Example (in ``deploy.py``)::

        from pyinfra import inventory
        fleet = fleet_from_inventory(inventory, "inventory/local.py")

    Raises FleetError listing every problem (file: host: key: what).
    """
    if not group_data_dirs:
        group_data_dirs = _default_group_data_dirs(inventory_file)
    sources = _Sources(inventory, inventory_file, group_data_dirs)
    problems: list[str] = []
    hosts: list[HostSpec] = []
    fleet_values: dict[str, tuple[Any, str]] = {}

    for host in inventory:
        data = host.data.dict()
        name = _node_name(host, data)
        _check_typos(data, f"{inventory_file}: host {name}", problems)
        for key, default in FLEET_KEYS.items():
            value = data.get(key, default)
            if key not in fleet_values:
                fleet_values[key] = (value, name)
            elif fleet_values[key][0] != value:
                problems.append(
                    f"{sources.of(host, key)}: host {name}: key {key}: differs from host "
                    f"{fleet_values[key][1]}; fleet-wide keys belong in group_data/all.py"
                )
        spec = _host_spec(host, data, sources, problems)
        if spec is not None:
            hosts.append(spec)

    if not hosts and not problems:
        problems.append(f"{inventory_file}: the inventory has no hosts")

    def fleet_value(key: str) -> Any:
        return fleet_values.get(key, (FLEET_KEYS[key], ""))[0]

    catalog_file = _all_file(sources, "model_catalog")
    catalog = _load_catalog(fleet_value("model_catalog"), catalog_file, problems)

    settings: dict[str, Any] = {}
    try:
        settings["versions"] = Versions.model_validate(fleet_value("versions") or {})
    except ValidationError as exc:
        problems.extend(_errors(exc, f"{_all_file(sources, 'versions')}: key versions"))
    raw_router = fleet_value("router") or {}
    try:
        if not isinstance(raw_router, dict):
            raise ValueError("router: expected a mapping")
        settings["router"] = RouterSettings.from_data(raw_router)
    except ValidationError as exc:
        problems.extend(_errors(exc, f"{_all_file(sources, 'router')}: key router"))
    except ValueError as exc:
        problems.append(f"{_all_file(sources, 'router')}: key {exc}")

    raw_catalog = fleet_value("model_catalog")
    refused = set(raw_catalog) - set(catalog) if isinstance(raw_catalog, dict) else set()
    _check_names(hosts, catalog, refused, inventory, sources, problems)
    router_state = fleet_value("router_state")
    router_vip = fleet_value("router_vip")
    _check_replicas(hosts, router_state, router_vip, sources, problems)
    # The Redis host by its node name, however the inventory named it.
    router_state = next(
        (spec.name for spec in hosts if router_state in (spec.name, spec.inventory_name)),
        router_state,
    )
    if problems:
        raise FleetError(problems)

    warnings = _catalog_warnings(hosts, catalog) + _group_warnings(inventory_file, hosts, catalog)

    return Fleet(
        name=str(fleet_value("fleet_name") or Path(inventory_file).stem),
        source=inventory_file,
        hosts=tuple(hosts),
        catalog=catalog,
        versions=settings["versions"],
        router=settings["router"],
        placement_strict=bool(fleet_value("placement_strict")),
        router_state=router_state,
        router_vip=router_vip,
        warnings=tuple(warnings),
    )


def _catalog_warnings(hosts: list[HostSpec], catalog: dict[str, ModelSpec]) -> list[str]:
    """Catalog groups no host is in (a catalog may serve several inventories, so not an
    error), with a hint when the name looks like a typo of a group that has hosts, and
    models that no host of this inventory holds at all."""
    all_groups = sorted({group for spec in hosts for group in spec.groups})
    backend_hosts = [spec for spec in hosts if spec.backend is not None]
    listed = {name for spec in backend_hosts for name in spec.models}
    held_groups = {group for spec in backend_hosts for group in spec.groups}
    warnings = []
    for model in catalog.values():
        for group in model.groups:
            if group not in all_groups:
                close = difflib.get_close_matches(group, all_groups, n=1, cutoff=0.8)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                warnings.append(
                    f"model {model.name}: group {group!r} has no host in this inventory{hint}"
                )
        if model.name not in listed and not held_groups & set(model.groups):
            warnings.append(
                f"model {model.name}: no backend host in this inventory holds it (groups: "
                f"{', '.join(model.groups) or 'none'}; no backend host lists it in models)"
            )
    return warnings


def _group_warnings(
    inventory_file: str, hosts: list[HostSpec], catalog: dict[str, ModelSpec]
) -> list[str]:
    """A group that means something here (``router``, a catalog ``groups`` name) given a
    string in the inventory file: pyinfra makes groups of lists and tuples only, so
    ``router = "r1"`` is silently no group. And a fleet with no router."""
    meaningful = {"router"} | {group for model in catalog.values() for group in model.groups}
    warnings = []
    try:
        statements = ast.parse(Path(inventory_file).read_text(), inventory_file).body
    except (OSError, SyntaxError, ValueError):
        statements = []  # pyinfra has loaded it already; nothing to add
    for node in statements:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            for target in node.targets:
                name = target.id if isinstance(target, ast.Name) else ""
                if name in meaningful and isinstance(value, str):
                    warnings.append(
                        f"{inventory_file}: {name} = {value!r} is a string, and pyinfra reads "
                        f"a group only from a list or a tuple: write {name} = [{value!r}]"
                    )
    if not any("router" in spec.groups for spec in hosts):
        warnings.append("no host is in group 'router': the deploy sets up no router")
    return warnings


def _all_file(sources: _Sources, key: str) -> str:
    file = sources.group_files.get("all")
    if file and re.search(rf"^{key}\s*[:=]", Path(file).read_text(), re.M):
        return file
    return sources.inventory_file


def _check_names(
    hosts: list[HostSpec],
    catalog: dict[str, ModelSpec],
    refused: set[str],
    inventory: Any,
    sources: _Sources,
    problems: list[str],
) -> None:
    """Cross-checks: unique node names, known models, each model reachable by its backends.

    ``refused``: catalog entries whose own problems are already reported; a host listing one
    is not told it is missing from the catalog.

    A catalog ``groups`` entry naming a group with no host is fine: group_data is shared by
    every inventory in the folder (see ``Fleet.warnings``).
    """
    seen: dict[str, str] = {}
    for spec in hosts:
        if spec.name in seen:
            problems.append(
                f"{sources.inventory_file}: host {spec.inventory_name}: key node_name: "
                f"{spec.name!r} is also the node name of {seen[spec.name]}"
            )
        seen[spec.name] = spec.inventory_name
    for spec in hosts:
        pyinfra_host = inventory.get_host(spec.inventory_name)
        for name in spec.models:
            if name not in catalog and name not in refused:
                close = difflib.get_close_matches(name, list(catalog), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"{sources.of(pyinfra_host, 'models')}: host {spec.name}: key models: "
                    f"{name!r} is not in model_catalog{hint}"
                )
        if spec.backend is None:
            continue
        listed = [catalog[n] for n in spec.models if n in catalog]
        listed += [m for m in catalog.values() if set(m.groups) & set(spec.groups)]
        for model in listed:
            if not model.served_by(spec.backend.kind):
                what = "an ollama tag" if spec.backend.kind == "ollama" else "a gguf source"
                problems.append(
                    f"{_all_file(sources, 'model_catalog')}: host {spec.name}: key "
                    f"model_catalog.{model.name}: backend {spec.backend.kind} needs {what}"
                )


def _check_replicas(
    hosts: list[HostSpec],
    router_state: Any,
    router_vip: Any,
    sources: _Sources,
    problems: list[str],
) -> None:
    """Router replicas: several routers share their state through the ``router_state`` host
    (Redis); ``router_vip`` needs router hosts with IP addresses (keepalived's unicast peers).
    """
    routers = [spec for spec in hosts if spec.router]
    state_file = _all_file(sources, "router_state")
    if router_state is not None:
        names = {spec.name for spec in hosts} | {spec.inventory_name for spec in hosts}
        if not isinstance(router_state, str) or router_state not in names:
            close = difflib.get_close_matches(str(router_state), sorted(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"{state_file}: key router_state: {router_state!r} is not a host of this "
                f"inventory{hint}; name the host that runs Redis for the router replicas"
            )
        elif not routers:
            problems.append(
                f"{state_file}: key router_state: set, but no host is in the "
                f"{ROUTER_GROUP!r} group; the shared state is for router replicas"
            )
    elif len(routers) > 1:
        problems.append(
            f"{state_file}: key router_state: not set, but the {ROUTER_GROUP!r} group holds "
            f"{len(routers)} hosts ({', '.join(s.name for s in routers)}); replicas share "
            "their loads and drains through Redis: set router_state to the host that runs it"
        )
    if router_vip is None:
        return
    vip_file = _all_file(sources, "router_vip")
    try:
        vip = ipaddress.ip_interface(str(router_vip))
        if "/" not in str(router_vip) or vip.version != 4:
            raise ValueError("expected an IPv4 address with its prefix, e.g. 10.89.0.200/24")
    except ValueError as exc:
        problems.append(f"{vip_file}: key router_vip: {router_vip!r}: {exc}")
        return
    if not routers:
        problems.append(
            f"{vip_file}: key router_vip: set, but no host is in the {ROUTER_GROUP!r} group"
        )
    for spec in routers:
        try:
            address = ipaddress.ip_address(spec.address)
        except ValueError:
            problems.append(
                f"{sources.inventory_file}: host {spec.name}: key address: {spec.address!r} is "
                "not an IP address; keepalived's unicast peers need the router hosts' IPs "
                "(set address: to the host's fleet-network address)"
            )
            continue
        if address not in vip.network:
            problems.append(
                f"{vip_file}: key router_vip: {vip} is not in the network of router host "
                f"{spec.name} ({spec.address}); the virtual IP must be on the routers' network"
            )
        if address == vip.ip:
            problems.append(
                f"{vip_file}: key router_vip: {vip.ip} is the address of router host "
                f"{spec.name}; pick a free address for the virtual IP"
            )


def _default_group_data_dirs(inventory_file: str) -> list[str]:
    dirs = [str(Path(os.getcwd()) / "group_data")]
    inventory_dir = str(Path(inventory_file).parent.resolve() / "group_data")
    if inventory_dir not in dirs:
        dirs.append(inventory_dir)
    return [d for d in dirs if Path(d).is_dir()]


def _pyinfra_make_inventory() -> Any:
    """pyinfra's CLI inventory loader, without running ``pyinfra_cli/__init__.py``.

    That ``__init__`` calls ``gevent.monkey.patch_all()``, which breaks asyncio (and so the
    router and its tests) in a process that only wants to read an inventory. The loader module
    itself needs no patching, so it is imported under a bare parent package that is removed
    again; a later ``import pyinfra_cli`` (the real CLI) still runs the patch as usual.
    """
    if "pyinfra_cli" in sys.modules:
        from pyinfra_cli.inventory import make_inventory

        return make_inventory
    spec = importlib.util.find_spec("pyinfra_cli")
    assert spec is not None and spec.submodule_search_locations is not None
    package = types.ModuleType("pyinfra_cli")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["pyinfra_cli"] = package
    try:
        module = importlib.import_module("pyinfra_cli.inventory")
    finally:
        del sys.modules["pyinfra_cli"]
    return module.make_inventory


def load_fleet(
    inventory_file: str | os.PathLike[str], group_data_dirs: Iterable[str] = ()
) -> Fleet:
    """Read an inventory file and its group_data through pyinfra's loader; validate it all.

    Mirrors ``pyinfra INVENTORY deploy.py``: group data comes from ``./group_data``, then
    ``<inventory dir>/group_data``, then ``group_data_dirs`` (later wins).
    """
    path = str(inventory_file)
    extra_dirs = [str(d) for d in group_data_dirs]
    inventory = load_inventory(path, extra_dirs)
    dirs = _default_group_data_dirs(path) + extra_dirs
    return fleet_from_inventory(inventory, path, dirs)


def load_inventory(inventory_file: str, group_data_dirs: Iterable[str] = ()) -> Any:
    """The ``pyinfra.api.Inventory`` pyinfra's CLI would build (hosts, groups, data)."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state

    make_inventory = _pyinfra_make_inventory()
    # pyinfra caches compiled inventory/group_data files by name for the life of the process;
    # a long-lived caller (tests, tools) must see edits made since the last load.
    sys.modules["pyinfra_cli.util"].PYTHON_CODES.clear()
    if not Path(inventory_file).is_file():
        raise FleetError([f"{inventory_file}: no such inventory file"])
    extra_dirs = [str(d) for d in group_data_dirs]
    try:
        with ctx_state.use(State()):
            return make_inventory(
                inventory_file, cwd=os.getcwd(), group_data_directories=extra_dirs or None
            )
    except Exception as exc:  # pyinfra wraps errors in user files; keep its message
        raise FleetError([f"{inventory_file}: cannot load inventory: {exc}"]) from None
