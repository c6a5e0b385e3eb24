"""The one renderer: every file a host gets, from the plan and the host's role knobs.

``render_host`` makes them all (environment files, every systemd unit, backend configs, the
router's ``router.yaml`` and units); each role contributes its templates under
``templates/<role>/``. The deploy hands the files to the roles, which only put them in place;
``modelfleet render``, the golden tests and ``tests/infra`` call the same function, so what they
show is what a host holds. Renders are deterministic (sorted, no timestamps), so a second deploy
with the same inputs changes nothing, and a file changes only when its own inputs change.

Example::

    plan = plan_fleet(fleet, hardware)
    data = inventory.get_host("gpu-nv-01").data.dict()      # the host's role knobs
    for file in render_host(plan, plan.host("gpu-nv-01"), data):
        print(file.path)            # /etc/ollama/ollama-rtx-4090.env, ...

Role knobs (``roles/<role>/defaults.py``) are read from the host's data, else their default;
``check_host`` reports unknown role keys and missing release checksums before anything renders.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2
import yaml

from modelfleet.deploy.inventory import Versions
from modelfleet.deploy.plan import BackendInstance, FleetPlan, HostPlan, PlacedModel, RenderedFile
from modelfleet.roles import knobs
from modelfleet.roles.addresses import listen_address, local_host
from modelfleet.roles.llama_server import defaults as llama_server_defaults
from modelfleet.roles.llama_swap import defaults as llama_swap_defaults
from modelfleet.roles.ollama import defaults as ollama_defaults

__all__ = ["RenderedFile", "check_host", "render_host", "router_yaml"]

TEMPLATES = "templates"  # package data of modelfleet (the top-level templates/ folder)
SYSTEMD_DIR = "/etc/systemd/system"
PODMAN = "/usr/bin/podman"
# Where the Ollama container keeps its models; the host's models_dir is mounted there.
OLLAMA_CONTAINER_MODELS = "/root/.ollama/models"
# Where the token lives when the fleet sets no router.admin_token_file (the admin API and the
# rollout's config reload need one).
DEFAULT_TOKEN_FILE = "/etc/modelfleet/admin-token"

# Backend kind -> the role that runs it (its knob prefix, its defaults module).
BACKEND_ROLES: dict[str, Any] = {
    "ollama": ollama_defaults,
    "llama-swap": llama_swap_defaults,
    "llama-server": llama_server_defaults,
}


def role_name(kind: str) -> str:
    """``llama-swap`` -> ``llama_swap``: the role (and knob prefix) of a backend kind."""
    return kind.replace("-", "_")


def role_knob(kind: str, name: str, data: Mapping[str, Any]) -> Any:
    """A backend role's knob for a host: its data, else the role's default."""
    key = f"{role_name(kind)}_{name}"
    return data.get(key, BACKEND_ROLES[kind].DEFAULTS.get(key))


def with_role_env(inst: BackendInstance, data: Mapping[str, Any]) -> BackendInstance:
    """The instance with its role's ``<role>_extra_env`` added to the plan's environment."""
    extra = role_knob(inst.kind, "extra_env", data) or {}
    return inst.model_copy(update={"env": {**inst.env, **extra}}) if extra else inst


def check_host(where: str, host_plan: HostPlan, data: Mapping[str, Any]) -> list[str]:
    """Problems with the host's role knobs: unknown role keys, and per backend role the values
    it cannot run without. ``where`` starts each line (``"inventory/prod.py: host gpu-01"``)."""
    problems = knobs.check_role_keys(data, where)
    values = knobs.role_values(data)
    for kind, role in BACKEND_ROLES.items():
        installs = {inst.install for inst in host_plan.instances if inst.kind == kind}
        problems += [f"{where}: {problem}" for problem in role.check(values, installs)]
    return list(dict.fromkeys(problems))  # llama-swap repeats llama-server's binary check


def yaml_scalar(value: Any) -> str:
    """A YAML-safe inline value: JSON is YAML, and it quotes whatever needs quoting."""
    return json.dumps(value, ensure_ascii=False)


def _ini_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if "\n" in text:
        raise ValueError(f"INI value may not contain a newline: {text!r}")
    return text


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelfleet", TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["yaml"] = yaml_scalar
    env.filters["ini"] = _ini_value
    env.filters["shquote"] = shlex.quote
    return env


def render_template(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` (StrictUndefined: a missing variable is an error)."""
    return _environment().get_template(name).render(**context)


def _env_lines(env: Mapping[str, str]) -> list[tuple[str, str]]:
    for key, value in env.items():
        if "\n" in value or "\n" in key:
            raise ValueError(f"environment {key}: value may not contain a newline")
    return sorted(env.items())


def _unit(inst: BackendInstance, content: str) -> RenderedFile:
    return RenderedFile(
        path=f"{SYSTEMD_DIR}/{inst.service_name}.service",
        content=content,
        role=role_name(inst.kind),
        instance=inst.name,
    )


# --------------------------------------------------------------------------- Ollama


def ollama_env(inst: BackendInstance) -> dict[str, str]:
    """The instance's environment; in a container the models live at the mounted path."""
    env = dict(inst.env)
    if inst.install == "container":
        env["OLLAMA_MODELS"] = OLLAMA_CONTAINER_MODELS
    return env


def render_ollama(
    inst: BackendInstance, versions: Versions, values: Mapping[str, Any]
) -> list[RenderedFile]:
    """Environment file + systemd unit (native ``ollama serve``, or a podman container)."""
    env_path = f"{values['ollama_env_dir']}/{inst.service_name}.env"
    env_file = render_template("ollama/ollama.env.j2", inst=inst, env=_env_lines(ollama_env(inst)))
    if inst.install == "native":
        unit = render_template(
            "ollama/ollama.service.j2",
            inst=inst,
            env_path=env_path,
            user=values["ollama_user"],
            binary=ollama_defaults.BINARY_LINK,
        )
    else:
        image = versions.cuda_image if inst.accelerator != "rocm" else versions.rocm_image
        unit = render_template(
            "ollama/ollama-container.service.j2",
            inst=inst,
            env_path=env_path,
            podman=PODMAN,
            rocm_groups=list(values["ollama_rocm_groups"]),
            container_args=list(values["ollama_container_args"]),
            image=image,
            container_models=OLLAMA_CONTAINER_MODELS,
        )
    env = RenderedFile(
        path=env_path, content=env_file, mode="0640", role="ollama", instance=inst.name
    )
    return [env, _unit(inst, unit)]


# --------------------------------------------------------------------------- llama.cpp


def _llama_flag_pairs(args: tuple[str, ...]) -> list[tuple[str, str]]:
    """``("--jinja", "--temp", "0.7")`` -> ``[("jinja", "true"), ("temp", "0.7")]``."""
    pairs: list[tuple[str, str]] = []
    n = 0
    while n < len(args):
        flag = args[n]
        if not flag.startswith("--"):
            raise ValueError(f"llama_args: expected a --long-flag, got {flag!r}")
        if n + 1 < len(args) and not args[n + 1].startswith("--"):
            pairs.append((flag[2:], args[n + 1]))
            n += 2
        else:
            pairs.append((flag[2:], "true"))
            n += 1
    return pairs


def llama_model_args(inst: BackendInstance, model: PlacedModel) -> list[str]:
    """llama-server flags for one model (without --port/--host).

    ``--ctx-size`` is ctx x slots: llama-server splits its context across the parallel slots,
    and the plan gives every slot the model's full context.
    """
    assert model.gguf_path is not None, f"{model.name}: no GGUF path on a llama.cpp instance"
    args = [
        "--model",
        model.gguf_path,
        "--alias",
        model.name,
        "--ctx-size",
        str(model.ctx * model.slots),
        "--parallel",
        str(model.slots),
        "--n-gpu-layers",
        "0" if inst.accelerator == "cpu" else "999",
    ]
    return args + list(model.llama_args)


def render_llama_swap(inst: BackendInstance, values: Mapping[str, Any]) -> list[RenderedFile]:
    """llama-swap ``config.yaml`` (one entry per model: cmd, proxy, ttl, aliases, env; a
    group) and the instance's unit."""
    models = []
    for model in inst.models:
        args = llama_model_args(inst, model)
        models.append(
            {
                "model": model,
                "cmd": " ".join(["${server}", "--port", "${PORT}", *map(shlex.quote, args)]),
                "ttl": model.ttl_s if model.ttl_s is not None else _llama_swap_ttl(inst.keep_alive),
                "env": [f"{k}={v}" for k, v in _env_lines(inst.env)],
            }
        )
    config_path = f"{values['llama_swap_config_dir']}/{inst.name}.yaml"
    content = render_template(
        "llama_swap/config.yaml.j2",
        inst=inst,
        models=models,
        server=f"{llama_server_defaults.binary_path(values)} --host 127.0.0.1",
        start_port=5800 + 100 * inst.index,
        health_check_timeout=int(values["llama_swap_health_check_timeout_s"]),
        # All models resident at once when they fit together; otherwise one at a time (the
        # plan's max_loaded for llama-swap is all of them or 1, see plan._max_loaded).
        swap=inst.max_loaded < len(inst.models),
    )
    unit = render_template(
        "llama_swap/llama-swap.service.j2",
        inst=inst,
        user=values["llama_swap_user"],
        root=values["llama_swap_root"],
        config_path=config_path,
        listen=listen_address(inst.bind, inst.port),
    )
    config = RenderedFile(path=config_path, content=content, role="llama_swap", instance=inst.name)
    return [config, _unit(inst, unit)]


def render_llama_server(inst: BackendInstance, values: Mapping[str, Any]) -> list[RenderedFile]:
    """llama-server router-mode presets INI (``--models-preset``: one section per model) and
    the instance's unit."""
    sections = []
    for model in inst.models:
        args = llama_model_args(inst, model)
        pairs = [(args[n][2:], args[n + 1]) for n in range(0, 10, 2)]
        pairs += _llama_flag_pairs(model.llama_args)
        sections.append({"name": model.name, "pairs": pairs})
    presets_path = f"{values['llama_server_config_dir']}/{inst.name}.ini"
    content = render_template("llama_server/presets.ini.j2", inst=inst, sections=sections)
    command = [
        llama_server_defaults.binary_path(values),
        "--models-preset",
        presets_path,
        "--models-max",
        str(inst.max_loaded),
        "--host",
        inst.bind.strip("[]"),  # llama-server takes an IPv6 address bare
        "--port",
        str(inst.port),
        *map(str, values["llama_server_extra_args"]),
    ]
    unit = render_template(
        "llama_server/llama-server.service.j2",
        inst=inst,
        user=values["llama_server_user"],
        command=shlex.join(command),
    )
    presets = RenderedFile(
        path=presets_path, content=content, role="llama_server", instance=inst.name
    )
    return [presets, _unit(inst, unit)]


def _llama_swap_ttl(duration: str) -> int:
    """An Ollama-style keep_alive as llama-swap's ``ttl`` (whole seconds, 0 = never unload).

    Ollama's 0 means "unload as soon as the request ends", llama-swap's 0 "never", so a zero
    or sub-second keep_alive becomes 1 s (llama-swap's TTL ticks every second); a negative
    one, "never" in Ollama, becomes 0. Example::

        [_llama_swap_ttl(d) for d in ("30m", "1.5h", "90s", "600", "0", "0.4s", "-1")]
        # [1800, 5400, 90, 600, 1, 1, 0]
    """
    text = duration.strip()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise ValueError(f"keep_alive: cannot read duration {duration!r}") from None
    if value < 0:
        return 0
    return max(int(value), 1)


# --------------------------------------------------------------------------- router


def admin_token_file(plan: FleetPlan) -> str:
    """The root-only admin token file on router hosts."""
    return plan.router.admin_token_file or DEFAULT_TOKEN_FILE


def runtime_token_path(service: str) -> str:
    """Where the router service reads its private copy of the token (its RuntimeDirectory;
    the unit copies the root-only file there at start)."""
    return f"/run/{service}/admin-token"


def shared_state(plan: FleetPlan, replica: str, values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The router's ``shared_state`` section for router host ``replica`` (None: the fleet has
    no ``router_state`` host). The password stays in its file; the URL carries none."""
    if plan.router_state is None:
        return None
    redis_host = plan.host(plan.router_state)
    url_host = f"[{redis_host.address}]" if ":" in redis_host.address else redis_host.address
    return {
        "url": f"redis://{url_host}:{int(values['redis_state_port'])}/0",
        "password_file": str(values["redis_state_password_file"]),
        "timeout_ms": int(values["redis_state_timeout_ms"]),
        "replica": replica,
    }


def router_yaml(plan: FleetPlan, service: str, shared: Mapping[str, Any] | None = None) -> str:
    """``router.yaml`` for a router host whose unit is ``service``: the plan's router config
    (``FleetPlan.router_config``), with the token path the service itself reads, and the
    replica's ``shared_state`` section when the fleet has one (see :func:`shared_state`)."""
    config = plan.router_config()
    update: dict[str, Any] = {}
    if config.admin_token_file:
        update["admin_token_file"] = runtime_token_path(service)
    if shared is not None:
        if "shared_state" not in type(config).model_fields:
            raise ValueError(
                "key router_state: this checkout's router has no shared_state setting "
                "(router/config.py); router replicas need a router release that has it"
            )
        update["shared_state"] = dict(shared)
    if update:
        config = type(config).model_validate({**config.model_dump(), **update})
    # Every non-default setting but the backends, generically (new RouterConfig keys need no
    # template change); secrets are excluded (the plan only ever carries their file paths).
    settings = config.model_dump(
        mode="json", exclude={"backends", "admin_token", "api_keys"}, exclude_defaults=True
    )
    settings_yaml = yaml.safe_dump(settings, sort_keys=False, default_flow_style=False)
    return render_template("router/router.yaml.j2", config=config, settings_yaml=settings_yaml)


def router_config_path(values: Mapping[str, Any]) -> str:
    return f"{values['router_config_dir']}/router.yaml"


def render_router(
    plan: FleetPlan, values: Mapping[str, Any], replica: str = ""
) -> list[RenderedFile]:
    """``router.yaml``, and the router's service and socket units; ``replica`` is the router
    host's node name (its name in the shared state, when the fleet has a router_state)."""
    service = str(values["router_service"])
    config_path = router_config_path(values)
    unit = render_template(
        "router/modelfleet-router.service.j2",
        fleet=plan.fleet,
        user=values["router_user"],
        service=service,
        root=values["router_root"],
        token_path=admin_token_file(plan),
        config_path=config_path,
        shutdown_timeout_s=int(values["router_shutdown_timeout_s"]),
    )
    socket = render_template(
        "router/modelfleet-router.socket.j2",
        fleet=plan.fleet,
        listen=listen_address(plan.router.bind, plan.router.port),
    )
    return [
        RenderedFile(
            path=config_path,
            content=router_yaml(plan, service, shared_state(plan, replica, values)),
            role="router",
        ),
        RenderedFile(path=f"{SYSTEMD_DIR}/{service}.service", content=unit, role="router"),
        RenderedFile(path=f"{SYSTEMD_DIR}/{service}.socket", content=socket, role="router"),
    ]


# --------------------------------------------------------------------------- router replicas


def render_redis_state(
    plan: FleetPlan, host_plan: HostPlan, values: Mapping[str, Any]
) -> list[RenderedFile]:
    """Redis for the router replicas: modelfleet's own config (soft state, bound to the
    fleet address and loopback) and the drop-in that points Debian's unit at it. The password
    is not rendered: the role writes it to ``redis_state_secret_config`` (0600)."""
    config_path = str(values["redis_state_config"])
    config = render_template(
        "redis_state/modelfleet.conf.j2",
        fleet=plan.fleet,
        address=host_plan.address,
        port=int(values["redis_state_port"]),
        maxmemory_mb=int(values["redis_state_maxmemory_mb"]),
        secret_config=values["redis_state_secret_config"],
    )
    dropin = render_template(
        "redis_state/redis-server.dropin.conf.j2",
        config=config_path,
        overrides=sorted(dict(values["redis_state_service_overrides"]).items()),
    )
    return [
        RenderedFile(path=config_path, content=config, role="redis_state"),
        RenderedFile(
            path=f"{SYSTEMD_DIR}/redis-server.service.d/modelfleet.conf",
            content=dropin,
            role="redis_state",
        ),
    ]


def render_keepalived(
    plan: FleetPlan, host_plan: HostPlan, values: Mapping[str, Any]
) -> list[RenderedFile]:
    """keepalived.conf of a router host: VRRP in unicast to the other router hosts, the
    fleet's VIP, and a track script on the local router's ``/readyz``. The password is not
    rendered: the role writes ``keepalived_auth_config`` (0600), which the config includes."""
    routers = [h.name for h in plan.router_hosts]
    position = routers.index(host_plan.name)
    interface = values["keepalived_interface"]
    if not interface:
        raise ValueError(
            f"host {host_plan.name}: key keepalived_interface: not set and not detected; set "
            "it to the interface that holds the host's address (the deploy asks the host)"
        )
    priority = values["keepalived_priority"]
    content = render_template(
        "keepalived/keepalived.conf.j2",
        fleet=plan.fleet,
        host=host_plan.name,
        address=host_plan.address,
        peers=[h.address for h in plan.router_hosts if h.name != host_plan.name],
        interface=interface,
        virtual_router_id=int(values["keepalived_virtual_router_id"]),
        priority=int(priority) if priority is not None else max(150 - 10 * position, 1),
        advert_int_s=int(values["keepalived_advert_int_s"]),
        vip=plan.router_vip,
        router_address=listen_address(local_host(plan.router.bind), plan.router.port),
        check_interval_s=int(values["keepalived_check_interval_s"]),
        check_timeout_s=int(values["keepalived_check_timeout_s"]),
        fall=int(values["keepalived_check_fall"]),
        rise=int(values["keepalived_check_rise"]),
        auth_config=values["keepalived_auth_config"],
    )
    return [RenderedFile(path=str(values["keepalived_config"]), content=content, role="keepalived")]


# --------------------------------------------------------------------------- per host


def render_host(
    plan: FleetPlan, host_plan: HostPlan, data: Mapping[str, Any]
) -> list[RenderedFile]:
    """Every file the host gets: its instances' files (with ``<role>_extra_env``), and the
    router's on router hosts. ``data`` is the host's inventory data (its role knobs)."""
    values = knobs.role_values(data)
    files: list[RenderedFile] = []
    for inst in (with_role_env(inst, data) for inst in host_plan.instances):
        if inst.kind == "ollama":
            files += render_ollama(inst, plan.versions, values)
        elif inst.kind == "llama-swap":
            files += render_llama_swap(inst, values)
        else:
            files += render_llama_server(inst, values)
    if host_plan.router:
        files += render_router(plan, values, host_plan.name)
    if plan.router_state == host_plan.name:
        files += render_redis_state(plan, host_plan, values)
    if host_plan.router and plan.router_vip:
        files += render_keepalived(plan, host_plan, values)
    return files


def parse_back(file: RenderedFile) -> Any:
    """Parse a rendered file the way its consumer will (used by tests and ``render``)."""
    import configparser

    from modelfleet.router.config import RouterConfig

    if file.role == "router" and file.path.endswith(".yaml"):
        return RouterConfig.model_validate(yaml.safe_load(file.content))
    if file.path.endswith((".yaml", ".yml")):
        return yaml.safe_load(file.content)
    if file.role == "redis_state" and not file.path.endswith(".d/modelfleet.conf"):
        # redis.conf: one directive per line, arguments quoted as in a shell.
        return [
            shlex.split(line)
            for line in file.content.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    if file.role == "keepalived":
        return _keepalived_blocks(file)
    if file.path.endswith((".ini", ".service", ".socket", ".d/modelfleet.conf")):
        parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        # Presets may open with top-level keys (``version = 1``) before the first section.
        top = "[__top__]\n" if file.path.endswith(".ini") else ""
        parser.read_string(top + file.content)
        return parser
    if file.path.endswith(".env"):
        env = {}
        for line in file.content.splitlines():
            if line.strip() and not line.startswith("#"):
                key, sep, value = line.partition("=")
                if not sep:
                    raise ValueError(f"{file.path}: not KEY=value: {line!r}")
                env[key] = value
        return env
    raise ValueError(f"{file.path}: no parser for this kind of file")


def _keepalived_blocks(file: RenderedFile) -> list[str]:
    """The top-level block names of a keepalived.conf; its braces must balance."""
    depth, blocks = 0, []
    for raw in file.content.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.endswith("{") and depth == 0:
            blocks.append(line[:-1].strip())
        depth += line.count("{") - line.count("}")
        if depth < 0:
            raise ValueError(f"{file.path}: a '}}' closes nothing: {raw!r}")
    if depth:
        raise ValueError(f"{file.path}: {depth} block(s) left open")
    return blocks
