"""Rendering: every file a host gets, from the plan, with Jinja2 templates in ``templates/``.

One function per file kind; each returns :class:`RenderedFile` objects (absolute path on the
host, content, mode). Renders are deterministic (sorted, no timestamps), so a second deploy
with the same inputs changes nothing, and a file changes only when its own inputs change.

Example::

    plan = plan_fleet(fleet, hardware)
    for file in render_host(plan, "gpu-nv-01"):
        print(file.path)            # /etc/systemd/system/ollama-rtx-4090.service, ...
    router_yaml = render_router_yaml(plan)

``RenderSettings`` holds the paths and names the roles use (binaries, config dirs, users); the
defaults match the roles' DEFAULTS, and ``RenderSettings.from_host_data(host.data.dict())``
picks up a host's overrides.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict

from deploy.fleet import Versions
from deploy.planner import BackendInstance, FleetPlan, PlacedModel

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# Where the Ollama container keeps its models; the host's models_dir is mounted there.
OLLAMA_CONTAINER_MODELS = "/root/.ollama/models"


class RenderedFile(BaseModel):
    """One file for one host."""

    model_config = ConfigDict(frozen=True)

    path: str
    content: str
    mode: str = "0644"
    role: str
    instance: str | None = None


class RenderSettings(BaseModel):
    """Paths and names the rendered files point at; host data keys of the same name override."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ollama_binary: str = "/usr/local/bin/ollama"
    ollama_user: str = "ollama"
    ollama_env_dir: str = "/etc/ollama"
    ollama_container_args: tuple[str, ...] = ()
    # Supplementary groups for ROCm containers. None by default: the container runs as root,
    # which podman leaves CAP_DAC_OVERRIDE, so /dev/kfd and /dev/dri/renderD* (root:render 660)
    # open without them, and `--group-add render` fails outright on images without a render
    # group (the Ollama image has none). For an image that runs as a non-root user, give the
    # host's numeric GIDs (getent group render video).
    ollama_rocm_groups: tuple[str, ...] = ()
    podman_binary: str = "/usr/bin/podman"
    systemd_dir: str = "/etc/systemd/system"
    llama_server_binary: str = "/opt/llama-server/current/llama-server"
    llama_server_config_dir: str = "/etc/llama-server"
    llama_swap_config_dir: str = "/etc/llama-swap"
    llama_swap_health_check_timeout_s: int = 120
    router_config_path: str = "/etc/modelfleet/router.yaml"

    @classmethod
    def from_host_data(cls, data: Mapping[str, Any]) -> RenderSettings:
        """Settings with a host's overrides (keys of the same name in its data)."""
        return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})


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
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
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


# --------------------------------------------------------------------------- Ollama


def ollama_env(inst: BackendInstance) -> dict[str, str]:
    """The instance's environment; in a container the models live at the mounted path."""
    env = dict(inst.env)
    if inst.install == "container":
        env["OLLAMA_MODELS"] = OLLAMA_CONTAINER_MODELS
    return env


def render_ollama(
    inst: BackendInstance, versions: Versions, settings: RenderSettings
) -> list[RenderedFile]:
    """Environment file + systemd unit (native ``ollama serve``, or a podman container)."""
    env_path = f"{settings.ollama_env_dir}/{inst.service_name}.env"
    env_file = render_template("ollama/ollama.env.j2", inst=inst, env=_env_lines(ollama_env(inst)))
    if inst.install == "native":
        unit = render_template(
            "ollama/ollama.service.j2", inst=inst, env_path=env_path, settings=settings
        )
    else:
        image = versions.cuda_image if inst.accelerator != "rocm" else versions.rocm_image
        unit = render_template(
            "ollama/ollama-container.service.j2",
            inst=inst,
            env_path=env_path,
            settings=settings,
            image=image,
            container_models=OLLAMA_CONTAINER_MODELS,
        )
    return [
        RenderedFile(
            path=env_path, content=env_file, mode="0640", role="ollama", instance=inst.name
        ),
        RenderedFile(
            path=f"{settings.systemd_dir}/{inst.service_name}.service",
            content=unit,
            role="ollama",
            instance=inst.name,
        ),
    ]


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


def render_llama_swap(inst: BackendInstance, settings: RenderSettings) -> list[RenderedFile]:
    """llama-swap ``config.yaml``: one entry per model (cmd, proxy, ttl, aliases, env), a group."""
    models = []
    for model in inst.models:
        args = llama_model_args(inst, model)
        models.append(
            {
                "model": model,
                "cmd": " ".join(["${server}", "--port", "${PORT}", *map(shlex.quote, args)]),
                "ttl": model.ttl_s if model.ttl_s is not None else _seconds(inst.keep_alive),
                "env": [f"{k}={v}" for k, v in _env_lines(inst.env)],
            }
        )
    content = render_template(
        "llama_swap/config.yaml.j2",
        inst=inst,
        models=models,
        server=f"{settings.llama_server_binary} --host 127.0.0.1",
        start_port=5800 + 100 * inst.index,
        health_check_timeout=settings.llama_swap_health_check_timeout_s,
        # All models resident at once when they fit together; otherwise swap one for another.
        swap=inst.max_loaded < len(inst.models),
    )
    return [
        RenderedFile(
            path=f"{settings.llama_swap_config_dir}/{inst.name}.yaml",
            content=content,
            role="llama_swap",
            instance=inst.name,
        )
    ]


def render_llama_server(inst: BackendInstance, settings: RenderSettings) -> list[RenderedFile]:
    """llama-server router-mode presets INI (``--models-preset``): one section per model."""
    sections = []
    for model in inst.models:
        args = llama_model_args(inst, model)
        pairs = [(args[n][2:], args[n + 1]) for n in range(0, 10, 2)]
        pairs += _llama_flag_pairs(model.llama_args)
        sections.append({"name": model.name, "pairs": pairs})
    content = render_template("llama_server/presets.ini.j2", inst=inst, sections=sections)
    return [
        RenderedFile(
            path=f"{settings.llama_server_config_dir}/{inst.name}.ini",
            content=content,
            role="llama_server",
            instance=inst.name,
        )
    ]


def llama_server_command(inst: BackendInstance, settings: RenderSettings) -> list[str]:
    """The router-mode ``llama-server`` command line of an instance (for its unit)."""
    return [
        settings.llama_server_binary,
        "--models-preset",
        f"{settings.llama_server_config_dir}/{inst.name}.ini",
        "--models-max",
        str(inst.max_loaded),
        "--host",
        inst.bind,
        "--port",
        str(inst.port),
    ]


def _seconds(duration: str) -> int:
    """Ollama-style keep_alive ("30m", "1h", "90s", "600", "-1") as seconds; <0 -> 0 (never)."""
    text = duration.strip()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)
    except (ValueError, IndexError):
        raise ValueError(f"keep_alive: cannot read duration {duration!r}") from None
    return max(value, 0)


# --------------------------------------------------------------------------- router


def render_router_yaml(plan: FleetPlan) -> str:
    """``router.yaml`` with the whole fleet's truth; validates against RouterConfig."""
    config = plan.router_config()
    # Every non-default setting but the backends, generically (new RouterConfig keys need no
    # template change); secrets are excluded (the plan only ever carries their file paths).
    settings = config.model_dump(
        mode="json", exclude={"backends", "admin_token", "api_keys"}, exclude_defaults=True
    )
    settings_yaml = yaml.safe_dump(settings, sort_keys=False, default_flow_style=False)
    return render_template("router/router.yaml.j2", config=config, settings_yaml=settings_yaml)


# --------------------------------------------------------------------------- per host


def render_instance(
    inst: BackendInstance, versions: Versions, settings: RenderSettings | None = None
) -> list[RenderedFile]:
    """Every file of one backend instance."""
    settings = settings or RenderSettings()
    if inst.kind == "ollama":
        return render_ollama(inst, versions, settings)
    if inst.kind == "llama-swap":
        return render_llama_swap(inst, settings)
    return render_llama_server(inst, settings)


def render_host(
    plan: FleetPlan, host: str, settings: RenderSettings | None = None
) -> list[RenderedFile]:
    """Every file the host gets: its instances' files, and router.yaml on router hosts."""
    settings = settings or RenderSettings()
    host_plan = plan.host(host)
    files: list[RenderedFile] = []
    for inst in host_plan.instances:
        files += render_instance(inst, plan.versions, settings)
    if host_plan.router:
        files.append(
            RenderedFile(
                path=settings.router_config_path,
                content=render_router_yaml(plan),
                mode="0644",
                role="router",
            )
        )
    return files


def render_fleet(
    plan: FleetPlan, settings: RenderSettings | None = None
) -> dict[str, list[RenderedFile]]:
    """Files per host name, for every host of the plan."""
    return {host.name: render_host(plan, host.name, settings) for host in plan.hosts}


def write_tree(
    plan: FleetPlan, out_dir: str | Path, settings: RenderSettings | None = None
) -> list[Path]:
    """Write ``<out>/<host>/<path on host>`` for every file, plus ``<out>/router.yaml``."""
    out = Path(out_dir)
    written: list[Path] = []
    for host, files in render_fleet(plan, settings).items():
        for file in files:
            target = out / host / file.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
            written.append(target)
    router = out / "router.yaml"
    router.parent.mkdir(parents=True, exist_ok=True)
    router.write_text(render_router_yaml(plan))
    written.append(router)
    return written


def parse_back(file: RenderedFile) -> Any:
    """Parse a rendered file the way its consumer will (used by tests and ``render --check``)."""
    import configparser

    from router.config import RouterConfig

    if file.role == "router":
        return RouterConfig.model_validate(yaml.safe_load(file.content))
    if file.path.endswith((".yaml", ".yml")):
        return yaml.safe_load(file.content)
    if file.path.endswith((".ini", ".service")):
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
