"""The modelfleet router on router hosts: a versioned venv per release, a safe rollout.

1. The controller builds the project's wheel and the router's own dependency wheels once per
   release, when the upload runs (never under ``--dry``; ``wheelhouse.py``); a router host
   installs them with ``pip install --no-index`` into ``<root>/releases/<release id>/``: a
   router-only environment (no pyinfra, paramiko, gevent, pynvml). The release id hashes the
   sources, so a re-run of the same checkout builds and uploads nothing.
2. ``router.yaml`` and the units are rendered from the whole fleet's plan by
   ``deploy/render.py`` (``--limit`` does not shrink it); this role puts them in place. The
   admin token stays in a root-only file (0600); the unit hands the service a private copy at
   start (see ``templates/router/modelfleet-router.service.j2``).
3. ``router-rollout.py`` tries the new release and config on a side port first; only when the
   candidate answers ``/readyz`` are ``<root>/current`` and the config switched and the service
   restarted, and if the restarted service fails ``/readyz`` both are switched back.
4. Before the backends change, ``withdraw_leaving_models`` makes the running router stop
   routing each model that leaves a backend (the live config without it, re-read in place),
   so no request reaches a backend that is about to delete or unload it.
5. The listening socket belongs to ``<service>.socket`` (systemd socket activation): on a
   restart the old process stops accepting and finishes its requests in flight while new
   connections wait in the socket's backlog for the new one, so no client is refused or cut.

Example (``deploy.py`` does this through ``deploy/apply/context.py``)::

    router.rollout(config=files[0], units=files[1:], token_path=token_file)
"""

from __future__ import annotations

import posixpath
import shlex
import sys
from collections.abc import Sequence
from io import StringIO

import yaml
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import FileContents, Link
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from modelfleet.deploy.plan import RenderedFile
from modelfleet.roles import drain
from modelfleet.roles.addresses import local_host
from modelfleet.roles.redis_state.defaults import DEFAULTS as REDIS_STATE
from modelfleet.roles.router import operations as ops
from modelfleet.roles.router.defaults import DEFAULTS
from modelfleet.roles.router.wheelhouse import build_wheelhouse, release_id, wheelhouse_path

ROLLOUT_SCRIPT = "/usr/local/lib/modelfleet/router-rollout.py"


def listen_address(router_yaml: str) -> str:
    return str((yaml.safe_load(router_yaml) or {}).get("listen", "127.0.0.1:11434"))


def listen_port(router_yaml: str) -> int:
    return int(listen_address(router_yaml).rpartition(":")[2])


def listen_bind(router_yaml: str) -> str:
    """The host part of ``listen``: what the router binds, where the deploy calls it."""
    return listen_address(router_yaml).rpartition(":")[0]


def without_leaving_models(live_yaml: str, new_yaml: str) -> str | None:
    """The live router config with each backend's models cut to those the new config keeps
    it serving (a backend the new config drops is drained), or None when nothing leaves.

    Models that join stay out until the new config: they are not on their backends yet.

    Example::

        without_leaving_models(live, new)   # live minus gemma3-270m on gpu-nv1-rtx-4090
    """
    gone = leaving(live_yaml, new_yaml)
    live = yaml.safe_load(live_yaml) or {}
    changed = False
    for backend in live.get("backends") or []:
        models = gone.get(backend["name"])
        if models is None:
            continue
        if not models:  # the whole backend leaves (its unit is retired): route nothing there
            changed = changed or not backend.get("drained")
            backend["drained"] = True
            continue
        backend["models"] = [m for m in backend.get("models") or [] if m["name"] not in models]
        changed = True
    return yaml.safe_dump(live, sort_keys=False) if changed else None


def leaving(live_yaml: str, new_yaml: str) -> dict[str, list[str]]:
    """Per backend of the live config, the models the new config no longer routes there;
    an empty list: the whole backend leaves.

    Example::

        leaving(live, new)   # {"gpu-nv1-rtx-4090": ["gemma3-270m"], "old-backend": []}
    """
    keeps = {
        backend["name"]: {model["name"] for model in backend.get("models") or []}
        for backend in (yaml.safe_load(new_yaml) or {}).get("backends") or []
    }
    gone: dict[str, list[str]] = {}
    for backend in (yaml.safe_load(live_yaml) or {}).get("backends") or []:
        keep = keeps.get(backend["name"])
        if keep is None:
            gone[backend["name"]] = []
            continue
        models = [m["name"] for m in backend.get("models") or [] if m["name"] not in keep]
        if models:
            gone[backend["name"]] = models
    return gone


@deploy("modelfleet router: models leaving", data_defaults=DEFAULTS)
def withdraw_leaving_models(
    config: RenderedFile, token_path: str, drain_timeout_s: float = 120
) -> list[OperationMeta]:
    """Make the running router stop routing the models that leave a backend in ``config``
    (the whole fleet's next router.yaml), before any backend changes, then wait for the
    requests still in flight on them (up to ``drain_timeout_s``); nothing when none leaves or
    no router runs here yet."""
    data = host.data
    root, service = data.router_root, data.router_service
    config_path, router_yaml = config.path, config.content
    live_lines = host.get_fact(FileContents, path=config_path)
    current = host.get_fact(Link, path=f"{root}/current")
    if not live_lines or not current:
        return []
    stage = without_leaving_models("\n".join(live_lines), router_yaml)
    if stage is None:
        return []
    op = ops.rollout(
        name="Stop routing the models that leave their backends (before they are removed)",
        release_dir=current["link_target"],
        config=stage,
        config_path=config_path,
        listen_port=listen_port(stage),
        listen_bind=listen_bind(stage),
        service=service,
        user=data.router_user,
        token_path=token_path,
        side_port=data.router_side_port,
        timeout_s=data.router_health_timeout_s,
        root=root,
        script=ROLLOUT_SCRIPT,
        keep_releases=data.router_keep_releases,
    )
    waits = [
        drain.wait_unrouted(
            name=f"Wait for the requests in flight on {backend}"
            + (f" ({', '.join(models)})" if models else " (it leaves the fleet)"),
            backend=backend,
            models=models,
            router_port=listen_port(stage),
            router_bind=listen_bind(stage),
            token_path=token_path,
            drain_timeout_s=drain_timeout_s,
        )
        for backend, models in leaving("\n".join(live_lines), router_yaml).items()
    ]
    return [op, *waits]


def wait_ready(port: int, timeout_s: float, bind: str = "0.0.0.0") -> str:
    """Shell: wait until the router on ``port`` answers ``/readyz`` 200, else fail; it is asked
    at its ``bind`` address (127.0.0.1 for a wildcard, ``roles/addresses.py``)."""
    address = f"{local_host(bind)}:{int(port)}"
    message = shlex.quote(f"the router did not answer /readyz on {address} within {timeout_s} s")
    url = shlex.quote(f"http://{address}/readyz")
    return (
        f"for i in $(seq {int(timeout_s) * 4}); do "
        f"[ \"$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 "
        f'{url})" = 200 ] && exit 0; sleep 0.25; done; '
        f"echo {message} >&2; exit 1"
    )


@deploy("modelfleet router", data_defaults=DEFAULTS)
def rollout(
    config: RenderedFile,
    units: Sequence[RenderedFile],
    token_path: str,
    shared_password: str | None = None,
) -> list[OperationMeta]:
    """Install this checkout's release and make it live with ``config`` (the whole fleet's
    router.yaml); ``units`` are the service and socket units (``deploy/render.py``).

    ``token_path`` is the fleet's ``router.admin_token_file``: the root-only file on the host.
    ``shared_password``: the Redis password of a fleet with router replicas, written to
    ``redis_state_password_file`` (0600, owned by ``router_user``).

    Router replicas restart one at a time: every operation that restarts the router waits for
    its ``/readyz`` and runs host by host (``_serial``), and pyinfra runs one operation at a
    time, so each replica is restarted and ready before the next one restarts.
    """
    data = host.data
    root, user, service = data.router_root, data.router_user, data.router_service
    config_dir = data.router_config_dir
    config_path, router_yaml = config.path, config.content
    service_unit = next(unit for unit in units if unit.path.endswith(".service"))
    socket_file = next(unit for unit in units if unit.path.endswith(".socket"))

    apt.packages(
        name="Packages for the router venv",
        packages=list(data.router_packages),
        update=True,
        cache_time=data.router_apt_cache_time,
    )
    server.group(name=f"Group {user}", group=user, system=True)
    server.user(
        name=f"System user {user}",
        user=user,
        group=user,
        system=True,
        home=f"{root}",
        shell="/usr/sbin/nologin",
        create_home=False,
    )
    for path in sorted({root, f"{root}/releases", config_dir, posixpath.dirname(config_path)}):
        files.directory(name=f"Directory {path}", path=path, mode="0755")
    files.directory(
        name=f"Directory of {token_path}", path=posixpath.dirname(token_path), mode="0755"
    )

    if data.router_admin_token:
        token = ops.secret_file(
            name="Admin token (from inventory data)",
            path=token_path,
            content=str(data.router_admin_token),
        )
    else:
        token = ops.generated_secret(name="Admin token (made on the host)", path=token_path)
    secrets = [token]
    if shared_password is not None:
        key = "redis_state_password_file"
        password_file = str(data.get(key, REDIS_STATE[key]))
        files.directory(
            name=f"Directory of {password_file}", path=posixpath.dirname(password_file), mode="0755"
        )
        secrets.append(
            ops.secret_file(
                name=f"Shared-state password ({password_file})",
                path=password_file,
                content=shared_password,
                owner=user,
            )
        )

    release_dir = f"{root}/releases/{release_id()}"
    installed = ops.release(
        name=f"Router release {release_id()}",
        tarball=str(wheelhouse_path()),
        build=build_wheelhouse,
        release_dir=release_dir,
        controller_python=f"{sys.version_info.major}.{sys.version_info.minor}",
    )
    files.put(
        name="Rollout script",
        src=str(__file__).rsplit("/", 1)[0] + "/files/router-rollout.py",
        dest=ROLLOUT_SCRIPT,
        mode="0755",
    )
    unit = files.put(
        name=f"Unit {service}.service",
        src=StringIO(service_unit.content),
        dest=service_unit.path,
        mode=service_unit.mode,
    )
    socket_unit = files.put(
        name=f"Unit {service}.socket",
        src=StringIO(socket_file.content),
        dest=socket_file.path,
        mode=socket_file.mode,
    )
    systemd.daemon_reload(name=f"Reload systemd for {service}", _if=any_changed(unit, socket_unit))
    # A new unit or secret with a new config of the same release: the rollout must restart the
    # service (a reload would keep the old unit and the old token copy); the restart below
    # runs only when the rollout has nothing to do.
    restart = unit.will_change or any(op.will_change for op in secrets)
    live = ops.rollout(
        name=f"Roll out release {release_id()} with the fleet's router.yaml",
        release_dir=release_dir,
        config=router_yaml,
        config_path=config_path,
        listen_port=listen_port(router_yaml),
        listen_bind=listen_bind(router_yaml),
        service=service,
        user=user,
        token_path=token_path,
        side_port=data.router_side_port,
        timeout_s=data.router_health_timeout_s,
        root=root,
        script=ROLLOUT_SCRIPT,
        keep_releases=data.router_keep_releases,
        restart=restart,
        _serial=True,
    )
    # A new unit or token needs a restart even when release and config stay the same (the
    # rollout script restarts on its own when it switches the release).
    ready = wait_ready(
        listen_port(router_yaml), float(data.router_health_timeout_s), listen_bind(router_yaml)
    )
    server.shell(
        name=f"Restart {service} (unit or a secret changed), then wait for /readyz",
        commands=[f"systemctl restart {service}.service", ready],
        _serial=True,
        _if=lambda: (
            (unit.did_change() or any(op.did_change() for op in secrets)) and not live.did_change()
        ),
    )
    # A new listen address: the socket must be bound again, with the service stopped.
    server.shell(
        name=f"Bind {service}.socket again (its listen address changed)",
        commands=[
            f"systemctl stop {service}.service && systemctl restart {service}.socket "
            f"&& systemctl start {service}.service",
            ready,
        ],
        _serial=True,
        _if=lambda: socket_unit.did_change() and not live.did_change(),
    )
    systemd.service(
        name=f"{service}.socket enabled and listening",
        service=f"{service}.socket",
        running=True,
        enabled=True,
    )
    return [installed, unit, socket_unit, *secrets, live]
