"""The planner: fleet + hardware in, per-host backend instances and model placement out (pure).

How a host is planned:

1. Its GPUs are grouped by type (vendor, name, VRAM); each group becomes one backend instance
   with its own port (``backend_port`` + n) and device visibility. ``instance_per_gpu`` makes
   one instance per GPU instead; MIG slices count as GPUs of their own. A host without GPUs gets
   one CPU instance planned against its RAM.
2. Each model of the host's set goes to every instance where it fits:
   weights + KV cache for ctx x slots <= capacity (VRAM - ``vram_headroom_mb`` per GPU).
3. A model that fits on none of its hosts is an error naming the model, its need on each host
   and the capacity it was compared with (memory minus headroom). A model that fits elsewhere
   but not on one of its hosts is an error too, unless the fleet sets
   ``placement_strict = False`` (then it is listed in ``FleetPlan.skipped``).

Example::

    fleet = load_fleet("inventory/example.py")
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    for inst in plan.instances:
        print(inst.name, inst.url, [m.name for m in inst.models])
    plan.router_config()            # a router.config.RouterConfig
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelfleet.deploy.hardware.parsers import Gpu, HostHardware
from modelfleet.deploy.inventory import (
    FLEET_KEYS as FLEET_KEYS,  # re-exported: the roles see the inventory only through the plan
)
from modelfleet.deploy.inventory import (
    BackendSpec,
    Fleet,
    GgufSource,
    HostSpec,
    ModelSpec,
    RouterSettings,
    Versions,
)
from modelfleet.roles.addresses import is_wildcard, listen_address
from modelfleet.router.config import BackendConfig, ModelEntry, RouterConfig

Accelerator = Literal["cuda", "rocm", "cpu"]


class PlanError(Exception):
    """The fleet cannot be planned. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            problems[0]
            if len(problems) == 1
            else "cannot plan the fleet:\n  " + "\n  ".join(problems)
        )


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlacedModel(_Frozen):
    """A catalog model placed on one instance, with the names that instance uses for it."""

    name: str
    backend_model: str = Field(description="Ollama tag, or the llama-swap/llama-server model id")
    aliases: tuple[str, ...] = ()
    ollama: str | None = None
    gguf: GgufSource | None = None
    gguf_path: str | None = Field(default=None, description="where the GGUF lives on the host")
    size_mb: int
    kv_mb: int
    need_mb: int
    ctx: int
    slots: int
    ttl_s: int | None = None
    llama_args: tuple[str, ...] = ()


class BackendInstance(_Frozen):
    """One backend server process (or container) on one host, serving one group of GPUs."""

    name: str = Field(description="router backend name: <host>-<slug>")
    host: str = Field(description="node name of the host it runs on")
    index: int = Field(default=0, ge=0, description="position among the host's instances")
    vram_domain: str = Field(description="router 'host': backends here share this VRAM")
    kind: Literal["ollama", "llama-swap", "llama-server"]
    install: Literal["native", "container"]
    accelerator: Accelerator
    slug: str = Field(description="e.g. rtx-4090, mi300x, cpu")
    service_name: str = Field(description="systemd unit (and container) name, no .service")
    address: str
    bind: str
    port: int
    url: str
    gpus: tuple[Gpu, ...] = ()
    device_ids: tuple[str, ...] = Field(default=(), description="GPU uuids or indices")
    cdi_devices: tuple[str, ...] = Field(default=(), description="podman --device values")
    env: dict[str, str] = Field(default_factory=dict, description="the service's environment")
    vram_mb: int = Field(description="total memory of its GPUs (RAM for CPU instances)")
    capacity_mb: int = Field(description="vram_mb minus headroom: what models may use")
    slots: int
    max_loaded: int
    keep_alive: str
    models_dir: str
    models: tuple[PlacedModel, ...] = ()

    @property
    def gpu_summary(self) -> str:
        if not self.gpus:
            return "CPU"
        return f"{len(self.gpus)}x {self.gpus[0].name}"


class RenderedFile(_Frozen):
    """One file a host gets (made by ``deploy/render.py``; the roles put it in place)."""

    path: str
    content: str
    mode: str = "0644"
    role: str
    instance: str | None = None


class HostPlan(_Frozen):
    name: str
    inventory_name: str
    address: str
    groups: tuple[str, ...]
    router: bool = False
    hardware: HostHardware | None = None
    instances: tuple[BackendInstance, ...] = ()


class Misfit(_Frozen):
    """A model left off a host because no instance there can hold it."""

    model: str
    host: str
    need_mb: int
    largest_mb: int
    largest_instance: str


class FleetPlan(_Frozen):
    """What goes where. ``router_config()`` turns it into the router's config."""

    fleet: str
    hosts: tuple[HostPlan, ...]
    router: RouterSettings
    versions: Versions = Field(default_factory=Versions)
    skipped: tuple[Misfit, ...] = ()
    router_state: str | None = Field(default=None, description="node name of the Redis host")
    router_vip: str | None = Field(default=None, description="keepalived's virtual IP/prefix")

    @property
    def router_hosts(self) -> list[HostPlan]:
        return [h for h in self.hosts if h.router]

    @property
    def instances(self) -> list[BackendInstance]:
        return [inst for host in self.hosts for inst in host.instances]

    def host(self, name: str) -> HostPlan:
        for host in self.hosts:
            if name in (host.name, host.inventory_name):
                return host
        raise KeyError(f"no host {name!r} in the plan of fleet {self.fleet!r}")

    def router_config(self) -> RouterConfig:
        """The router's config: every instance as a backend with its models (no secrets)."""
        settings = self.router
        backends = [
            BackendConfig(
                name=inst.name,
                url=inst.url,
                kind=inst.kind,
                host=inst.vram_domain,
                vram_mb=max(inst.capacity_mb, 0),
                slots=inst.slots,
                max_loaded=inst.max_loaded,
                models=[
                    ModelEntry(
                        name=m.name,
                        backend_model=m.backend_model if m.backend_model != m.name else None,
                        aliases=list(m.aliases),
                        size_mb=m.size_mb,
                        kv_mb=m.kv_mb,
                        ctx=m.ctx,
                        slots=m.slots if m.slots != inst.slots else None,
                    )
                    for m in inst.models
                ],
            )
            for inst in self.instances
        ]
        return RouterConfig.model_validate(
            {
                **settings.options,
                "listen": listen_address(settings.bind, settings.port),
                "admin_token_file": settings.admin_token_file,
                "api_keys_file": settings.api_keys_file,
                "backends": backends,
                "fleet": self.fleet,
            }
        )


# --------------------------------------------------------------------------- helpers

_VENDOR_WORDS = re.compile(r"\b(nvidia|geforce|amd|radeon|instinct|graphics)\b", re.IGNORECASE)


def gpu_slug(name: str) -> str:
    """``NVIDIA GeForce RTX 4090`` -> ``rtx-4090``; ``AMD Instinct MI300X`` -> ``mi300x``."""
    text = _VENDOR_WORDS.sub(" ", name).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return slug or "gpu"


def _units(host: str, gpus: tuple[Gpu, ...], problems: list[str]) -> list[tuple[Gpu, str]]:
    """The schedulable devices: whole GPUs, or MIG slices; each with its visibility id."""
    units: list[tuple[Gpu, str]] = []
    for gpu in gpus:
        if gpu.mig_enabled:
            if not gpu.mig_devices:
                problems.append(
                    f"host {host}: GPU {gpu.index} ({gpu.name}) has MIG enabled but no MIG "
                    "instances; create them (nvidia-smi mig -cgi ... -C) or disable MIG"
                )
            for mig in gpu.mig_devices:
                slice_gpu = gpu.model_copy(
                    update={
                        "name": f"{gpu.name} MIG {mig.profile}",
                        "vram_mb": mig.vram_mb,
                        "uuid": mig.uuid,
                        "mig_enabled": False,
                        "mig_devices": (),
                    }
                )
                units.append((slice_gpu, mig.uuid))
        else:
            units.append((gpu, gpu.uuid if gpu.vendor == "nvidia" and gpu.uuid else str(gpu.index)))
    return units


def _group_units(units: list[tuple[Gpu, str]], per_gpu: bool) -> list[list[tuple[Gpu, str]]]:
    """Identical GPUs together; every MIG slice alone (a CUDA process uses one MIG device)."""
    groups: dict[tuple[str, str, int] | int, list[tuple[Gpu, str]]] = {}
    for n, (gpu, vis) in enumerate(units):
        alone = per_gpu or vis.startswith("MIG-")
        key: tuple[str, str, int] | int = n if alone else (gpu.vendor, gpu.name, gpu.vram_mb)
        groups.setdefault(key, []).append((gpu, vis))
    return list(groups.values())


def _visibility_env(accelerator: Accelerator, ids: list[str], install: str) -> dict[str, str]:
    if accelerator == "cuda":
        # In a container CDI already limits the devices and renumbers them from 0.
        return {} if install == "container" else {"CUDA_VISIBLE_DEVICES": ",".join(ids)}
    if accelerator == "rocm":
        # ROCR filters the devices first; HIP then numbers what is left from 0.
        return {
            "ROCR_VISIBLE_DEVICES": ",".join(ids),
            "HIP_VISIBLE_DEVICES": ",".join(str(n) for n in range(len(ids))),
        }
    return {}


def _max_loaded(backend: BackendSpec, needs: list[int], capacity: int) -> int:
    """How many models may be resident at once: ``max_loaded_models`` if set, else derived.

    Ollama checks VRAM itself before loading and evicts to make room, so its cap only needs to
    allow the most models that can ever fit together (the k smallest). llama-server counts
    models without looking at memory, so there any k of them must fit (the k largest).
    llama-swap runs its one group either one model at a time or all of them together
    (``swap``), so its cap is all of them when they fit together, else 1.

    Example: needs [20, 12, 7] MB on 32 MB: Ollama 2 (7 + 12), llama-server 2 (20 + 12),
    llama-swap 1 (all three need 39).
    """
    if backend.max_loaded_models:
        return backend.max_loaded_models
    if backend.kind == "llama-swap":
        return len(needs) if needs and sum(needs) <= capacity else 1
    return _fitting_count(needs, capacity, largest_first=backend.kind != "ollama")


def _fitting_count(needs: list[int], capacity: int, largest_first: bool) -> int:
    """How many of ``needs``, taken smallest (or largest) first, fit in ``capacity``; >= 1."""
    total, k = 0, 0
    for need in sorted(needs, reverse=largest_first):
        if total + need > capacity:
            break
        total, k = total + need, k + 1
    return max(k, 1)


def _max_loaded_problem(inst: BackendInstance, backend: BackendSpec) -> str | None:
    """Why a ``max_loaded_models`` set in the inventory is unsafe on this instance, if it is.

    llama-swap and llama-server count models and never look at memory, so a cap above what
    always fits lets the backend load a model the GPU has no room for.
    """
    cap, needs = backend.max_loaded_models, [m.need_mb for m in inst.models]
    if not cap or inst.kind == "ollama" or len(needs) < 2:
        return None
    where = f"host {inst.host}: key max_loaded_models: {cap} on {inst.kind} instance {inst.name}"
    if inst.kind == "llama-swap":
        count, total = len(needs), sum(needs)
        if cap == 1 or (cap >= count and total <= inst.capacity_mb):
            return None
        options = (
            f"1 or {count}"
            if total <= inst.capacity_mb
            else f"1 (all {count} together need {total} MB, more than its {inst.capacity_mb} MB)"
        )
        return (
            f"{where}, which holds {count} models: llama-swap runs them one at a time or all "
            f"together (its group's swap), so set {options}"
        )
    resident = sorted(needs, reverse=True)[:cap]
    if sum(resident) <= inst.capacity_mb:
        return None
    safe = _fitting_count(needs, inst.capacity_mb, largest_first=True)
    return (
        f"{where}: {len(resident)} of its models resident at once may need {sum(resident)} MB, "
        f"more than its {inst.capacity_mb} MB (llama-server counts models, not memory); at "
        f"most {safe} always fit"
    )


def _placed(model: ModelSpec, kind: str, slots: int, models_dir: str) -> PlacedModel:
    backend_model = (model.ollama or model.name) if kind == "ollama" else model.name
    gguf_path = f"{models_dir}/{model.gguf.file}" if model.gguf and kind != "ollama" else None
    return PlacedModel(
        name=model.name,
        backend_model=backend_model,
        aliases=model.aliases,
        ollama=model.ollama,
        gguf=model.gguf,
        gguf_path=gguf_path,
        size_mb=model.size_mb,
        kv_mb=model.kv_mb(slots),
        need_mb=model.need_mb(slots),
        ctx=model.ctx,
        slots=slots,
        ttl_s=model.ttl_s,
        llama_args=model.llama_args,
    )


def _slots_on(inst: BackendInstance, model: ModelSpec, backend: BackendSpec | None) -> int:
    if inst.kind == "ollama":
        return inst.slots  # one OLLAMA_NUM_PARALLEL for every model of the server
    return (backend.num_parallel if backend else None) or model.slots


def _need_text(model: ModelSpec, slots: int) -> str:
    return (
        f"needs {model.need_mb(slots)} MB (weights {model.size_mb} MB + KV cache "
        f"{model.kv_mb(slots)} MB for ctx {model.ctx} x {slots} slot{'s' if slots > 1 else ''})"
    )


# --------------------------------------------------------------------------- planning


def _plan_host(
    fleet: Fleet,
    spec: HostSpec,
    hardware: HostHardware,
    problems: list[str],
) -> tuple[list[BackendInstance], dict[str, ModelSpec]]:
    """Instances of one host, without models yet; and the host's model set."""
    backend = spec.backend
    assert backend is not None
    units = _units(spec.name, hardware.gpus, problems)
    models = {m.name: m for m in fleet.models_for(spec)}
    compatible = [m for m in models.values() if m.served_by(backend.kind)]
    default_slots = backend.num_parallel or max((m.slots for m in compatible), default=1)
    # Ollama has one context length per server (OLLAMA_CONTEXT_LENGTH; unset, it picks its own
    # default, not the catalog's ctx), as it has one OLLAMA_NUM_PARALLEL: every model of the
    # host runs, and is planned, with the largest ctx of its models.
    default_ctx = max((m.ctx for m in compatible), default=ModelSpec.model_fields["ctx"].default)
    if backend.kind == "ollama":
        models = {name: m.model_copy(update={"ctx": default_ctx}) for name, m in models.items()}

    groups = _group_units(units, backend.instance_per_gpu) if units else [[]]
    multi = len(groups) > 1
    instances: list[BackendInstance] = []
    seen_slugs: dict[str, int] = {}
    for n, group in enumerate(groups):
        gpus = tuple(gpu for gpu, _ in group)
        ids = [vis for _, vis in group]
        if gpus:
            accelerator: Accelerator = "cuda" if gpus[0].vendor == "nvidia" else "rocm"
            vram = sum(g.vram_mb for g in gpus)
            capacity = vram - backend.vram_headroom_mb * len(gpus)
            slug = gpu_slug(gpus[0].name)
        else:
            accelerator = "cpu"
            vram = hardware.ram_mb
            capacity = vram - backend.ram_headroom_mb
            slug = "cpu"
            if hardware.ram_mb <= 0:
                problems.append(
                    f"host {spec.name}: no GPUs and no RAM size; set ram_mb in its host data"
                )
        seen_slugs[slug] = seen_slugs.get(slug, 0) + 1
        if seen_slugs[slug] > 1:
            slug = f"{slug}-{seen_slugs[slug]}"
        port = backend.port + n
        env = _visibility_env(accelerator, ids, backend.install)
        if backend.kind == "ollama":
            env = {
                "OLLAMA_HOST": listen_address(backend.bind, port),
                "OLLAMA_MODELS": backend.models_dir,
                "OLLAMA_KEEP_ALIVE": backend.keep_alive,
                "OLLAMA_MAX_LOADED_MODELS": "0",  # filled in below, once models are known
                "OLLAMA_NUM_PARALLEL": str(default_slots),
                "OLLAMA_CONTEXT_LENGTH": str(default_ctx),
                **env,
            }
        cdi: tuple[str, ...] = ()
        if backend.install == "container" and accelerator == "cuda":
            cdi = tuple(f"nvidia.com/gpu={vis}" for vis in ids)
        service = f"{backend.kind}-{slug}"
        instances.append(
            BackendInstance(
                name=f"{spec.name}-{slug}",
                host=spec.name,
                index=n,
                vram_domain=f"{spec.name}/{slug}" if multi else spec.name,
                kind=backend.kind,
                install=backend.install,
                accelerator=accelerator,
                slug=slug,
                service_name=service,
                address=spec.address,
                bind=backend.bind,
                port=port,
                url=f"http://{_url_host(spec.address)}:{port}",
                gpus=gpus,
                device_ids=tuple(ids),
                cdi_devices=cdi,
                env=env,
                vram_mb=vram,
                capacity_mb=capacity,
                slots=default_slots,
                max_loaded=1,
                keep_alive=backend.keep_alive,
                models_dir=backend.models_dir,
            )
        )
    return instances, models


def _own_groups(fleet: Fleet, spec: HostSpec) -> list[str]:
    """The host's inventory groups, without the one pyinfra names after the inventory file."""
    return [group for group in spec.groups if group != Path(fleet.source).stem]


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def plan_fleet(fleet: Fleet, gpus_by_host: Mapping[str, HostHardware]) -> FleetPlan:
    """Plan every backend instance and place every model; raise PlanError listing all problems.

    ``gpus_by_host`` maps node names to the hardware of each backend host (from the GPU facts,
    or ``hardware_from_overrides``).
    """
    problems: list[str] = []
    host_instances: dict[str, list[BackendInstance]] = {}
    host_models: dict[str, dict[str, ModelSpec]] = {}
    for spec in fleet.backend_hosts:
        hardware = gpus_by_host.get(spec.name) or gpus_by_host.get(spec.inventory_name)
        if hardware is None:
            problems.append(
                f"host {spec.name}: no hardware facts; run `modelfleet detect` against it or "
                "set gpus: (and ram_mb: for CPU-only hosts) in its host data"
            )
            continue
        host_instances[spec.name], host_models[spec.name] = _plan_host(
            fleet, spec, hardware, problems
        )

    for spec in fleet.router_hosts:
        for inst in host_instances.get(spec.name, []):
            if inst.port == fleet.router.port:
                problems.append(
                    f"host {spec.name}: the router (key router.port) and instance {inst.name} "
                    f"(key backend_port) both want port {inst.port}; move one of them"
                )

    routers = [spec.name for spec in fleet.router_hosts]
    if len(routers) > 1 and not is_wildcard(fleet.router.bind):
        problems.append(
            f"router.bind {fleet.router.bind!r} is one address, but {len(routers)} hosts run the "
            f"router ({', '.join(routers)}) and each would bind it (as would keepalived's "
            "virtual IP): bind 0.0.0.0 and firewall the port instead"
        )

    placed, misfits = _place_models(fleet, host_instances, host_models)
    skipped = _misfit_problems(fleet, host_instances, placed, misfits, problems)
    finished: dict[str, list[BackendInstance]] = {}  # each host's instances, with models
    for spec in fleet.backend_hosts:
        backend = spec.backend
        assert backend is not None
        finished[spec.name] = []
        for inst in host_instances.get(spec.name, []):
            with_models = _with_models(inst, placed[inst.name], backend)
            finished[spec.name].append(with_models)
            if (problem := _max_loaded_problem(with_models, backend)) is not None:
                problems.append(problem)
            if inst.kind == "llama-swap" and not with_models.models:
                # llama-swap refuses a config without models; Ollama and llama-server start
                # empty (and the router learns what they serve)
                problems.append(
                    f"host {spec.name}: llama-swap instance {inst.name} holds no model, and "
                    "llama-swap does not start without one: list a model_catalog entry that "
                    f"fits its {inst.capacity_mb} MB in the host's models or give it one of "
                    f"the host's groups ({', '.join(_own_groups(fleet, spec))})"
                )
    if problems:
        raise PlanError(problems)

    hosts = []
    for spec in fleet.hosts:
        instances = finished.get(spec.name, [])
        hosts.append(
            HostPlan(
                name=spec.name,
                inventory_name=spec.inventory_name,
                address=spec.address,
                groups=spec.groups,
                router=spec.router,
                hardware=gpus_by_host.get(spec.name),
                instances=tuple(instances),
            )
        )
    return FleetPlan(
        fleet=fleet.name,
        hosts=tuple(hosts),
        router=fleet.router,
        versions=fleet.versions,
        skipped=tuple(skipped),
        router_state=fleet.router_state,
        router_vip=fleet.router_vip,
    )


# A model that fits on no instance of one of its hosts: (model, host, slots, largest instance).
_Misfit = tuple[ModelSpec, HostSpec, int, BackendInstance]


def _place_models(
    fleet: Fleet,
    host_instances: dict[str, list[BackendInstance]],
    host_models: dict[str, dict[str, ModelSpec]],
) -> tuple[dict[str, list[PlacedModel]], list[_Misfit]]:
    """Every model of a host's set goes to every instance of that host where it fits."""
    placed: dict[str, list[PlacedModel]] = {
        inst.name: [] for insts in host_instances.values() for inst in insts
    }
    misfits: list[_Misfit] = []
    for spec in fleet.backend_hosts:
        instances = host_instances.get(spec.name, [])
        for model in host_models.get(spec.name, {}).values():
            fitted = False
            for inst in instances:
                slots = _slots_on(inst, model, spec.backend)
                if model.need_mb(slots) <= inst.capacity_mb:
                    placed[inst.name].append(_placed(model, inst.kind, slots, inst.models_dir))
                    fitted = True
            if not fitted and instances:
                best = max(instances, key=lambda i: i.capacity_mb)
                if best.vram_mb <= 0:
                    continue  # a host with no memory size: that is its problem, reported
                misfits.append((model, spec, _slots_on(best, model, spec.backend), best))
    return placed, misfits


def _misfit_problems(
    fleet: Fleet,
    host_instances: dict[str, list[BackendInstance]],
    placed: dict[str, list[PlacedModel]],
    misfits: list[_Misfit],
    problems: list[str],
) -> list[Misfit]:
    """Turn misfits into problems (or, with placement_strict off, into skipped entries)."""
    everywhere = [inst for insts in host_instances.values() for inst in insts]
    largest = max(everywhere, key=lambda i: i.capacity_mb, default=None)
    hosts_of: dict[str, list[str]] = {}
    for inst in everywhere:
        for placed_model in placed[inst.name]:
            if inst.host not in hosts_of.setdefault(placed_model.name, []):
                hosts_of[placed_model.name].append(inst.host)

    skipped: list[Misfit] = []
    reported: set[str] = set()
    for model, spec, slots, best in misfits:
        if model.name not in hosts_of:
            # Fits on none of its hosts: each of them, with the figure compared against the need.
            if model.name not in reported:
                reported.add(model.name)
                own = [(s, n, b) for m, s, n, b in misfits if m.name == model.name]
                problems.append(_fits_nowhere(model, own, largest))
        elif fleet.placement_strict:
            problems.append(
                f"model {model.name} {_need_text(model, slots)}, more than host {spec.name} "
                f"offers (largest instance {best.name}: {_offer_text(best)}); it is placed "
                f"on {', '.join(hosts_of[model.name])}. Take it off this host's "
                "groups/models, or set placement_strict = False"
            )
        skipped.append(
            Misfit(
                model=model.name,
                host=spec.name,
                need_mb=model.need_mb(slots),
                largest_mb=best.capacity_mb,
                largest_instance=best.name,
            )
        )
    return skipped


def _offer_text(inst: BackendInstance) -> str:
    """``16384 MB (32768 MB RAM minus 16384 MB headroom)``: the figure placement compares."""
    memory = "RAM" if not inst.gpus else f"VRAM of {inst.gpu_summary}"
    return (
        f"{inst.capacity_mb} MB ({inst.vram_mb} MB {memory} minus "
        f"{inst.vram_mb - inst.capacity_mb} MB headroom)"
    )


def _fits_nowhere(
    model: ModelSpec,
    own: list[tuple[HostSpec, int, BackendInstance]],
    largest: BackendInstance | None,
) -> str:
    """A model too big for every host that carries it: per host, its need there (slots differ
    per backend) and the capacity it was compared with, headroom subtracted."""
    clauses = [
        f"on host {spec.name} it {_need_text(model, slots)}, more than the "
        f"{_offer_text(best)} of its largest instance {best.name}"
        for spec, slots, best in own
    ]
    text = f"model {model.name} fits on none of its hosts: " + "; ".join(clauses)
    if largest is not None and largest.host not in {spec.name for spec, _, _ in own}:
        text += (
            f". The largest instance in the fleet, {largest.name} on host {largest.host} "
            f"({_offer_text(largest)}), does not carry {model.name}: add the model to that "
            "host's groups/models, or give the model a smaller ctx"
        )
    return text


def _with_models(
    inst: BackendInstance, models: list[PlacedModel], backend: BackendSpec | None
) -> BackendInstance:
    """The instance with its models, and the resident-model cap that follows from them."""
    assert backend is not None  # only backend hosts have instances
    max_loaded = _max_loaded(backend, [m.need_mb for m in models], inst.capacity_mb)
    env = dict(inst.env)
    if inst.kind == "ollama":
        env["OLLAMA_MAX_LOADED_MODELS"] = str(max_loaded)
    return inst.model_copy(update={"models": tuple(models), "max_loaded": max_loaded, "env": env})


def hardware_from_overrides(fleet: Fleet, missing_ok: bool = False) -> dict[str, HostHardware]:
    """Hardware of every backend host from its ``gpus:``/``ram_mb:``/``cpu_cores:`` data.

    For offline planning (``modelfleet plan``); raises PlanError naming the hosts without it,
    unless ``missing_ok`` (then those hosts are simply left out).
    """
    hardware: dict[str, HostHardware] = {}
    missing = []
    for spec in fleet.backend_hosts:
        if spec.gpus is None:
            missing.append(spec.name)
            continue
        hardware[spec.name] = HostHardware(
            gpus=spec.gpus, cpu_cores=spec.cpu_cores or 1, ram_mb=spec.ram_mb or 0
        )
    if missing and not missing_ok:
        raise PlanError(
            [
                f"{fleet.source}: host {name}: key gpus: not set; offline planning needs the "
                "gpus: override (gpus: [] and ram_mb: for CPU-only hosts), or ask the host: "
                "modelfleet plan --detect"
                for name in missing
            ]
        )
    return hardware
