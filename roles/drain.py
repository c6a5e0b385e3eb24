"""A backend restart the router's clients do not see: drain, wait, restart, healthy, undrain.

The router's admin API (``POST /admin/backends/<name>/drain|undrain``, ``GET /admin/state``)
is asked **on the router host**, at the router's bind address (``127.0.0.1`` when it listens
on every address, ``roles/addresses.py``), by a small Python program that reads the root-only
admin token there: the token never crosses the controller, a command line or a
log. The router then sends no new request to the backend; the ones in flight finish (up to
``drain_timeout_s``, past which the restart goes ahead and the output says how many were cut
short); the unit restarts; once it answers its health URL the backend is undrained. If the
restart or the health check fails, the backend is undrained all the same and the operation
fails (the router's own health checks keep requests away from a backend that does not answer;
a backend left drained would stay out of the router after every later deploy). The program
runs with the router host's sudo settings (``--sudo``, ``_sudo`` in its data).

Where the router is not running yet (a first deploy) or does not know the backend (a new
instance), there is nothing to drain and the restart goes ahead; the output says so.

Example (``deploy/apply/rollout.py`` does this in batches)::

    drained_restart(
        name="Batch 1/2: restart ollama-rtx-4090, drained in the router",
        service="ollama-rtx-4090",
        backend="gpu-nv1-rtx-4090",
        health_url="http://127.0.0.1:11434/api/version",
        router_host="cpu-llama1",
        router_port=11434,
        router_bind="0.0.0.0",
        token_path="/etc/modelfleet/admin-token",
        _if=any_changed(unit, env),
    )
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from pyinfra import host, inventory, logger, state
from pyinfra.api import FunctionCommand, OperationError, StringCommand, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.api.host import Host

from modelfleet.roles.addresses import local_host

# Runs on the router host with its python3: drain (and wait) or undrain one backend, or wait
# (no drain) for its requests in flight on some models: those the router stopped routing there.
# argv: action backend address token_path timeout_s [models, comma-separated, for "wait"];
# address: host:port where the router is reached on its host (local_host of its bind).
# Prints one line saying what happened.
ADMIN_PROGRAM = r"""
import json, os, sys, time, urllib.error, urllib.request
action, backend, address, token_path, timeout_s = sys.argv[1:6]
only = set(filter(None, sys.argv[6].split(","))) if len(sys.argv) > 6 else set()
if not os.path.exists(token_path):
    print("no router on the router host yet (no %s): nothing to %s" % (token_path, action))
    sys.exit(0)
token = open(token_path).read().strip()
base = "http://%s" % address
def call(method, path):
    request = urllib.request.Request(
        base + path, method=method, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
def in_flight():
    for item in call("GET", "/admin/state")["backends"]:
        if item["name"] == backend:
            if only:
                return sum(m["in_flight"] for m in item["models"] if m["model"] in only)
            return item["in_flight"]
    return 0
try:
    if action == "wait":
        answer = {"in_flight": in_flight()}
    else:
        answer = call("POST", "/admin/backends/%s/%s" % (backend, action))
except urllib.error.HTTPError as exc:
    if exc.code == 404:
        print("the router does not know backend %s yet: nothing to %s" % (backend, action))
        sys.exit(0)
    raise
except OSError as exc:
    print("the router does not answer on %s (%s): nothing to %s" % (address, exc, action))
    sys.exit(0)
if action == "undrain":
    print("backend %s undrained: the router sends it requests again" % backend)
    sys.exit(0)
started, at_drain = time.monotonic(), answer.get("in_flight", 0)
while True:
    left = in_flight()
    waited = time.monotonic() - started
    what = "backend %s" % backend + (" (%s)" % ", ".join(sorted(only)) if only else "")
    done = "no longer routed" if action == "wait" else "drained"
    if left == 0:
        print("%s %s: %d requests in flight then, all finished after %.1f s"
              % (what, done, at_drain, waited))
        break
    if waited > float(timeout_s):
        print("%s: %d requests still in flight after the drain timeout (%s s); "
              "going ahead anyway, they are cut" % (what, left, timeout_s))
        break
    time.sleep(0.2)
"""


def connector_arguments(target: Host) -> dict[str, Any]:
    """How a command reaches ``target`` as root (``_sudo``, ``_su_user`` ...): from its host
    data and the deploy's config (``pyinfra --sudo``), as an operation's commands get them.
    A command run with ``Host.run_shell_command`` gets none of them by itself."""
    arguments, _ = pop_global_arguments(state, target, {})
    return {key: arguments[key] for key in CONNECTOR_ARGUMENT_KEYS if key in arguments}  # type: ignore[literal-required]


def router_admin(action: str, backend: str, router_host: str, port: int, token_path: str,
                 timeout_s: float, models: Sequence[str] = (), bind: str = "0.0.0.0",
                 ) -> None:  # fmt: skip
    """Run ``ADMIN_PROGRAM`` on the router host; log its line, prefixed with this host.

    It runs with the router host's sudo settings: the admin token file is root-only. The
    router is called at ``bind`` (its ``router.bind``), at 127.0.0.1 for a wildcard."""
    target = inventory.get_host(router_host)
    address = f"{local_host(bind)}:{int(port)}"
    argv = [action, backend, address, token_path, str(timeout_s), ",".join(models)]
    program = shlex.join(["python3", "-c", ADMIN_PROGRAM, *argv])
    # Before its first deploy the router host may not even have python3: no router to drain.
    command = StringCommand(
        f"if command -v python3 >/dev/null; then {program}; "
        f"else echo 'no python3 on the router host yet: no router to {action}'; fi"
    )
    if not target.connected:
        target.connect(raise_exceptions=True)
    ok, output = target.run_shell_command(
        command, print_output=False, print_input=False, **connector_arguments(target)
    )
    lines = [line.line for line in output.combined_lines] if output else []
    if not ok:
        raise OperationError(
            f"asking the router on {router_host} to {action} backend {backend} failed: "
            + " | ".join(lines[-5:])
        )
    for line in lines:
        logger.info(f"[{host.name}] router: {line}")


@operation(is_idempotent=False)
def drained_restart(
    service: str,
    backend: str,
    health_url: str,
    router_host: str | None,
    router_port: int = 11434,
    token_path: str = "/etc/modelfleet/admin-token",
    drain_timeout_s: float = 120,
    health_timeout_s: int = 120,
    router_bind: str = "0.0.0.0",
):
    """
    Restart ``service`` with its backend drained in the router meanwhile (see the module).

    Run it with ``_if=`` on the operations whose change calls for the restart.

    + service: the systemd unit, without ``.service``
    + backend: the router's name for it (the plan's instance name)
    + health_url: answers 200 (from this host) when the backend serves again: at the
      backend's bind address (``roles/addresses.py``)
    + router_host: the inventory name of the router host (None: no router, plain restart)
    + router_port/token_path: the router's port and the admin token file on the router host
    + router_bind: the router's bind address (``router.bind``): where it is called on its host
    + drain_timeout_s: how long requests in flight may take to finish before the restart
    + health_timeout_s: how long the restarted backend may take to answer ``health_url``
    """
    restart = f"systemctl restart {shlex.quote(service + '.service')}"
    quoted = shlex.quote(health_url)
    message = shlex.quote(
        f"{service} did not answer {health_url} with 200 within {health_timeout_s} s after its "
        "restart"
    )
    wait = (
        f"for i in $(seq {int(health_timeout_s) * 4}); do "
        f"[ \"$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {quoted})\" = 200 ] "
        f"&& exit 0; sleep 0.25; done; echo {message} >&2; exit 1"
    )
    if not router_host:
        yield restart
        yield wait
        return
    admin = (router_host, router_port, token_path)
    bind = {"bind": router_bind}
    yield FunctionCommand(router_admin, ("drain", backend, *admin, drain_timeout_s), bind)
    yield FunctionCommand(restart_then_undrain, (restart, wait, backend, *admin), bind)


def restart_then_undrain(
    restart: str,
    wait: str,
    backend: str,
    router_host: str,
    port: int,
    token_path: str,
    bind: str = "0.0.0.0",
) -> None:
    """On this host: ``restart``, then ``wait`` (for the health URL); then undrain ``backend``
    in the router **whatever happened** (a ``finally``), and fail naming what went wrong.

    Left drained, a backend whose restart failed would stay out of the router for good: the
    next deploy finds its unit and config unchanged, so it neither restarts nor undrains it.
    Undrained, it is kept away from requests by the router's own health checks until it
    answers again.
    """
    ok, lines = False, ["the restart did not run"]
    try:
        for command in (restart, wait):
            ok, output = host.run_shell_command(
                StringCommand(command),
                print_output=False,
                print_input=False,
                **connector_arguments(host),
            )
            lines = [line.line for line in output.combined_lines] if output else []
            if not ok:
                break
    finally:
        router_admin("undrain", backend, router_host, port, token_path, 0, bind=bind)
    if not ok:
        raise OperationError(
            " | ".join(lines[-5:] or [f"{command} failed"])
            + f"; backend {backend} undrained anyway: the router's health checks keep requests "
            "away from it until it answers"
        )


@operation(is_idempotent=False)
def wait_unrouted(
    backend: str,
    models: Sequence[str],
    router_port: int = 11434,
    token_path: str = "/etc/modelfleet/admin-token",
    drain_timeout_s: float = 120,
    router_bind: str = "0.0.0.0",
):
    """
    On the router host, after its live config stopped routing ``models`` to ``backend`` (or the
    whole backend, when ``models`` is empty): wait until the requests still in flight there
    finish, so that pruning those models or retiring the unit cuts none of them.

    + backend: the router's name for it
    + models: the models that leave it; empty: the whole backend leaves
    + router_port/token_path: the router's port and the admin token file on this host
    + router_bind: the router's bind address: where it is called (127.0.0.1 for a wildcard)
    + drain_timeout_s: how long those requests may take before the change goes ahead

    Example::

        wait_unrouted(name="Wait for gemma3 requests on gpu-nv1-rtx-4090",
                      backend="gpu-nv1-rtx-4090", models=["gemma3-270m"])
    """
    action = "wait" if models else "drain"
    admin = (host.name, router_port, token_path, drain_timeout_s, list(models))
    yield FunctionCommand(router_admin, (action, backend, *admin), {"bind": router_bind})
