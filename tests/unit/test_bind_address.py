"""A backend or router bound to one address is called there by the deploy's own calls on its host.

Before: every such call went to ``127.0.0.1:<port>``, which a socket bound to ``10.0.0.5:<port>``
refuses, so ``backend_bind: "10.0.0.5"`` (or a router ``bind`` on a LAN address) failed the
deploy: health waits, Ollama's pulls, deletes and tags, llama-server's preset reload, the
router's ``/readyz`` and admin API. Each call site is a row of ``SITES``: the shell command the
deploy runs on the host for it, and the request that command must make. The rows are checked
as rendered (the address in the command) and run against a stand-in service bound only to that
address on loopback (``127.0.0.2`` stands for a private interface: it refuses ``127.0.0.1``).

Also: a router ``bind`` change on the same port must bind the router's socket again
(``roles/router/files/router-rollout.py`` compared only the port).
"""

from __future__ import annotations

import http.server
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from pyinfra.api import Config, FunctionCommand, Inventory, State, StringCommand
from pyinfra.api.host import Host
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from modelfleet.deploy.apply import phases
from modelfleet.deploy.apply import rollout as apply_rollout
from modelfleet.deploy.inventory import RouterSettings
from modelfleet.deploy.plan import BackendInstance
from modelfleet.roles import drain, health
from modelfleet.roles.llama_server.operations import presets_reloaded
from modelfleet.roles.ollama import operations as ollama_ops
from modelfleet.roles.ollama.facts import OllamaModels
from modelfleet.roles.router import wait_ready
from modelfleet.roles.router.facts import RouterReady
from tests.unit.rollout_script import run_rollout

REPO = Path(__file__).resolve().parents[2]
PULL_SCRIPT = REPO / "roles" / "ollama" / "files" / "ollama-pull.py"

# bind address -> where the deploy calls it on the host (a URL's host part)
LOCAL = [
    ("0.0.0.0", "127.0.0.1"),
    ("::", "127.0.0.1"),
    ("[::]", "127.0.0.1"),
    ("", "127.0.0.1"),
    ("*", "127.0.0.1"),
    ("0:0:0:0:0:0:0:0", "127.0.0.1"),
    ("10.0.0.5", "10.0.0.5"),
    ("127.0.0.1", "127.0.0.1"),
    ("fd00::5", "[fd00::5]"),
    ("[fd00::5]", "[fd00::5]"),
    ("::1", "[::1]"),
    ("gpu-01.lan", "gpu-01.lan"),
]


@pytest.mark.parametrize(("bind", "expected"), LOCAL, ids=[repr(b) for b, _ in LOCAL])
def test_local_host_of_a_bind_address(bind: str, expected: str) -> None:
    from modelfleet.roles.addresses import local_host

    assert local_host(bind) == expected


# -- the call sites ------------------------------------------------------------------------------


@dataclass
class Site:
    """One place where the deploy calls a service on its own host."""

    command: Callable[[str, int, Path, pytest.MonkeyPatch], str]  # (bind, port, tmp, mp) -> sh
    request: str  # what the command asks the service, e.g. "GET /api/tags"


class FakeHost:
    """What an operation sees of ``pyinfra.host`` at prepare time, for the operations here."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts = facts
        self.data = SimpleNamespace(dict=dict, get=lambda key, default=None: default)

    def get_fact(self, fact: type, **kwargs: Any) -> Any:
        return self.facts.get(fact.__name__)

    def noop(self, description: str) -> None:
        raise AssertionError(f"expected commands, got a no-op: {description}")

    @staticmethod
    def loop(items: Any) -> Any:
        return items


def ollama_models_commands(
    mp: pytest.MonkeyPatch, have: list[str], wanted: list[str], **kwargs: Any
) -> list[str]:
    mp.setattr(ollama_ops, "host", FakeHost({"OllamaModels": have}))
    return [str(c) for c in ollama_ops.models._inner(wanted=wanted, **kwargs)]


def ollama_pull(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    (command,) = ollama_models_commands(
        mp, [], ["gemma3:270m"], port=port, bind=bind, helper=str(PULL_SCRIPT), wait_s=1
    )
    return command


def ollama_delete(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    (command,) = ollama_models_commands(mp, ["old:latest"], [], port=port, bind=bind, prune=True)
    return command


def presets_reload(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    (command,) = presets_reloaded._inner(port=port, bind=bind, retries=0)
    return str(command)


def instance(bind: str, port: int, kind: str = "ollama") -> BackendInstance:
    return BackendInstance.model_construct(
        name="gpu-01-nv",
        host="gpu-01",
        kind=kind,
        service_name=f"{kind}-nv",
        bind=bind,
        port=port,
    )


def curl(url: str) -> str:
    return f"curl -sf --max-time 5 {shlex.quote(url)}"


def drained_restart_health(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    """deploy/apply/rollout.py: the health URL each drained restart waits for."""
    got: list[dict[str, Any]] = []
    mp.setattr(apply_rollout, "host", FakeHost({}))
    mp.setattr(apply_rollout, "drained_restart", lambda **kwargs: got.append(kwargs))
    requests = apply_rollout.RestartRequests({"ollama-nv": [cast(Any, object())]})
    apply_rollout.rolling_restarts(
        [["gpu-01-nv"]],
        [instance(bind, port)],
        requests,
        {"ollama": "/api/version"},
        None,
        {"ollama": 1},
    )
    (kwargs,) = got
    return curl(kwargs["health_url"])


def health_check_urls(bind: str, port: int, mp: pytest.MonkeyPatch) -> list[str]:
    """deploy/apply/phases.py: the health-check phase's URLs, the instance's then the router's."""
    urls: list[str] = []
    mp.setattr(phases, "host", FakeHost({}))
    mp.setattr(health, "answers", lambda **kwargs: urls.append(kwargs["url"]))
    context = SimpleNamespace(plan=SimpleNamespace(router=RouterSettings(bind=bind, port=port)))
    host_plan = SimpleNamespace(instances=[instance(bind, port)], router=True)
    phases.health_check(cast(Any, context), cast(Any, host_plan), [])
    return urls


def health_check_backend(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return curl(health_check_urls(bind, port, mp)[0])


def health_check_router(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return curl(health_check_urls(bind, port, mp)[1])


def router_ready_fact(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return RouterReady().command(port=port, bind=bind)


def ollama_tags_fact(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return OllamaModels().command(port=port, bind=bind)


def router_wait_ready(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    return wait_ready(port, 1, bind)


@contextmanager
def router_host_shell() -> Iterator[tuple[list[str], Host]]:
    """A backend host and a router host in pyinfra's context (the backend host current); yields
    the commands the router host is asked to run (they are not run here) and the router host."""
    inventory = Inventory((["gpu-01", "router-01"], {}))
    state = State(inventory, Config())
    backend, router = inventory.get_host("gpu-01"), inventory.get_host("router-01")
    commands: list[str] = []

    def shell(command: StringCommand, **kwargs: Any) -> tuple[bool, CommandOutput]:
        commands.append(command.get_raw_value())
        return True, CommandOutput([])

    router.connected = backend.connected = True
    router.run_shell_command = shell  # type: ignore[method-assign]
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(backend):
        yield commands, router


def drain_admin(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    """roles/drain.py: the admin program a drained restart runs on the router host (its drain;
    the undrain after the restart is the same program)."""
    token = tmp / "admin-token"
    token.write_text("s3cret\n")
    with router_host_shell() as (commands, _):
        (to_drain,) = [
            command
            for command in drained_restart_commands(bind, port, str(token))
            if command.function is drain.router_admin
        ]
        to_drain.function(*to_drain.args, **to_drain.kwargs)
    (command,) = commands
    return command


def drained_restart_commands(bind: str, port: int, token: str) -> list[FunctionCommand]:
    return [
        command
        for command in drain.drained_restart._inner(
            service="ollama-nv",
            backend="nv",
            health_url="http://127.0.0.1:1/",
            router_host="router-01",
            router_port=port,
            router_bind=bind,
            token_path=token,
        )
        if isinstance(command, FunctionCommand)
    ]


def wait_unrouted_admin(bind: str, port: int, tmp: Path, mp: pytest.MonkeyPatch) -> str:
    """roles/router: waiting for the requests on models that leave, on the router host."""
    token = tmp / "admin-token"
    token.write_text("s3cret\n")
    with router_host_shell() as (commands, router), ctx_host.use(router):
        (wait,) = drain.wait_unrouted._inner(
            backend="nv",
            models=["gemma"],
            router_port=port,
            router_bind=bind,
            token_path=str(token),
        )
        wait.function(*wait.args, **wait.kwargs)
    (command,) = commands
    return command


SITES = {
    "ollama tags fact": Site(ollama_tags_fact, "GET /api/tags"),
    "ollama pull": Site(ollama_pull, "POST /api/pull"),
    "ollama delete": Site(ollama_delete, "DELETE /api/delete"),
    "llama-server presets reload": Site(presets_reload, "GET /models?reload=1"),
    "drained restart health wait": Site(drained_restart_health, "GET /api/version"),
    "health check backend": Site(health_check_backend, "GET /api/version"),
    "health check router": Site(health_check_router, "GET /readyz"),
    "router readyz fact": Site(router_ready_fact, "GET /readyz"),
    "router role readyz wait": Site(router_wait_ready, "GET /readyz"),
    "drain admin program": Site(drain_admin, "POST /admin/backends/nv/drain"),
    "wait unrouted admin program": Site(wait_unrouted_admin, "GET /admin/state"),
}

RENDERED = [("0.0.0.0", "127.0.0.1"), ("[::]", "127.0.0.1"), ("10.0.0.5", "10.0.0.5")]
RENDERED += [("fd00::5", "[fd00::5]")]


@pytest.mark.parametrize("site", list(SITES))
@pytest.mark.parametrize(("bind", "expected"), RENDERED, ids=[b for b, _ in RENDERED])
def test_each_call_site_calls_the_bind_address(
    site: str, bind: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = SITES[site].command(bind, 11434, tmp_path, monkeypatch)
    assert expected in command and "11434" in command
    if expected != "127.0.0.1":
        assert "127.0.0.1" not in command


# -- the same commands, run against a service bound only to that address ----------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers as Ollama, llama-server and the router would, enough for each call site."""

    server: Service

    def log_message(self, *args: Any) -> None:
        pass

    def answer(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        path = self.path.split("?")[0]
        body: Any = {}
        if path == "/api/tags":
            body = {"models": []}
        elif path == "/api/pull":
            body = {"status": "success"}
        elif path == "/admin/state":
            body = {"backends": [{"name": "nv", "in_flight": 0, "models": []}]}
        elif path.startswith("/admin/backends/"):
            body = {"backend": "nv", "in_flight": 0}
        data = json.dumps(body).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = answer


class Service(http.server.ThreadingHTTPServer):
    seen: list[str]


@contextmanager
def service_on(address: str) -> Iterator[Service]:
    """A stand-in service listening on ``address`` only, on a free port."""

    class Bound(Service):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    server = Bound((address, 0), Recorder)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_on_host(command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the host's shell would, ``python3`` being this interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120, check=False
    )


# bind address -> where a service bound to it listens here (127.0.0.2: one address only)
SERVED = [("0.0.0.0", "127.0.0.1"), ("127.0.0.2", "127.0.0.2"), ("::1", "::1")]


@pytest.mark.parametrize("site", list(SITES))
@pytest.mark.parametrize(("bind", "listening"), SERVED, ids=[b for b, _ in SERVED])
def test_each_call_site_reaches_a_service_bound_only_there(
    site: str, bind: str, listening: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with service_on(listening) as service:
        port = service.server_address[1]
        command = SITES[site].command(bind, port, tmp_path, monkeypatch)
        done = run_on_host(command, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert SITES[site].request in service.seen


# -- the router's rollout script: the call host, and a bind change on the same port ------------


REBIND = [
    "stop mf-router",
    "restart mf-router.socket",
    "start mf-router",
]

LISTEN_CHANGES = [
    # live listen, new listen, the socket is bound again
    ("0.0.0.0:11434", "10.0.0.5:11434", True),
    ("10.0.0.5:11434", "10.0.0.6:11434", True),
    ("[::]:11434", "0.0.0.0:11434", True),
    ("0.0.0.0:11434", "0.0.0.0:11435", True),
    ("0.0.0.0:11434", "0.0.0.0:11434", False),
    ("10.0.0.5:11434", "10.0.0.5:11434", False),
]


@pytest.mark.parametrize(
    ("live", "new", "rebinds"), LISTEN_CHANGES, ids=[f"{a}->{b}" for a, b, _ in LISTEN_CHANGES]
)
def test_a_new_listen_address_binds_the_socket_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live: str, new: str, rebinds: bool
) -> None:
    # Before: only a new *port* rebound the socket; a new bind address on the same port was a
    # config reload (POST /admin/reload) and the socket stayed on the old address for good.
    done = run_rollout(tmp_path, monkeypatch, live, new)
    assert done.status == 0
    rebound = [step for step in done.did if step in REBIND]
    if rebinds:
        assert rebound == REBIND
        assert not any(step.startswith("reload") for step in done.asked)
    else:
        assert rebound == []
        assert done.asked[0].startswith("reload ")


def test_the_rollback_of_a_new_listen_address_binds_the_socket_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the rollback compared ports only: same port, so no rebind, and it asked /readyz on
    # the old config's port, while the socket (its unit is the new one) is where the new listen is.
    done = run_rollout(
        tmp_path,
        monkeypatch,
        "0.0.0.0:11434",
        "10.0.0.5:11434",
        "--call-host",
        "10.0.0.5",
        ready_after_switch=False,
    )
    assert done.status == 1  # rolled back, and the old pair answers
    assert [step for step in done.did if step in REBIND] == REBIND + REBIND
    assert done.asked == ["readyz 10.0.0.5:11434", "readyz 10.0.0.5:11434"]


def test_the_rollout_script_calls_the_router_at_its_call_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A config change on a router bound to one address: the reload and /readyz go there.
    with service_on("127.0.0.2") as service:
        listen = f"127.0.0.2:{service.server_address[1]}"
        done = run_rollout(
            tmp_path, monkeypatch, listen, listen, "--call-host", "127.0.0.2", real_http=True
        )
    assert done.status == 0
    assert service.seen == ["POST /admin/reload", "GET /readyz"]


# -- what a bind address renders as ---------------------------------------------------------

CATALOG = (
    'model_catalog = {"m": {"ollama": "m:1b", "gguf": {"url": "https://example.invalid/m.gguf", '
    '"sha256": "0" * 64, "file": "m.gguf"}, "size_mb": 500, "kv_mb_per_1k_ctx": 10, '
    '"groups": ["gpu", "swap"]}}\n'
)
L4 = '{"name": "NVIDIA L4", "vram_mb": 23034}'


def rendered(write_inventory: Callable[..., str], bind: str, routers: str = '["r"]') -> dict:
    """path -> content of every rendered file of an Ollama host, a llama-swap host and the
    router, all bound to ``bind``."""
    from modelfleet.deploy.inventory import load_fleet, load_inventory
    from modelfleet.deploy.plan import hardware_from_overrides, plan_fleet
    from modelfleet.deploy.render import render_host

    path = write_inventory(
        f'gpu = [("o", {{"gpus": [{L4}]}})]\nswap = [("s", {{"gpus": [{L4}]}})]\n'
        f"router = {routers}\n",
        {
            "all": CATALOG
            + f"backend_bind = {bind!r}\nrouter = {{'bind': {bind!r}}}\n"
            + ('router_state = "r1"\n' if "r2" in routers else ""),
            "gpu": 'backend = "ollama"\nollama_release_sha256 = "0" * 64',
            "swap": 'backend = "llama-swap"\nllama_swap_release_sha256 = "0" * 64',
        },
    )
    fleet = load_fleet(path)
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    inventory = load_inventory(path)
    return {
        f.path: f.content
        for host in plan.hosts
        for f in render_host(plan, host, inventory.get_host(host.inventory_name).data.dict())
    }


@pytest.mark.parametrize(
    ("bind", "listen"),
    [("0.0.0.0", "0.0.0.0:{port}"), ("::", "[::]:{port}"), ("[::]", "[::]:{port}"),
     ("fd00::5", "[fd00::5]:{port}"), ("10.0.0.5", "10.0.0.5:{port}")],
)  # fmt: skip
def test_an_ipv6_bind_is_bracketed_wherever_host_and_port_meet(
    write_inventory: Callable[..., str], bind: str, listen: str
) -> None:
    """ ":::11434" is no address for systemd's ListenStream= (nor for Ollama's OLLAMA_HOST, nor
    llama-swap's -listen): an IPv6 literal goes in brackets there."""
    files = rendered(write_inventory, bind)
    socket_unit = next(c for p, c in files.items() if p.endswith("modelfleet-router.socket"))
    router_yaml = next(c for p, c in files.items() if p.endswith("router.yaml"))
    ollama_env = next(c for p, c in files.items() if p.endswith(".env") and "ollama" in p)
    swap_unit = next(c for p, c in files.items() if "llama-swap" in p and p.endswith(".service"))
    assert f"ListenStream={listen.format(port=11434)}\n" in socket_unit
    assert yaml.safe_load(router_yaml)["listen"] == listen.format(port=11434)
    assert f"OLLAMA_HOST={listen.format(port=11434)}\n" in ollama_env
    assert f"-listen {listen.format(port=8080)}" in swap_unit


def test_one_router_bind_address_on_several_router_hosts_is_a_plan_error(
    write_inventory: Callable[..., str],
) -> None:
    from modelfleet.deploy.plan import PlanError

    with pytest.raises(PlanError) as err:
        rendered(write_inventory, "10.0.0.5", routers='["r1", "r2"]')
    assert (
        "router.bind '10.0.0.5' is one address, but 2 hosts run the router (r1, r2) and each "
        "would bind it (as would keepalived's virtual IP): bind 0.0.0.0 and firewall the port "
        "instead"
    ) in str(err.value)
    rendered(write_inventory, "0.0.0.0", routers='["r1", "r2"]')  # every address: fine
