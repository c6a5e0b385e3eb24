"""Defects found by an audit of the roles and the deploy pipeline, each pinned by a test.

The drained restart (``roles/drain.py``) is run here the way pyinfra runs an operation: its
commands in order, the first failing one ends it (``pyinfra/api/operations.py``), with the
backend host's and the router host's shells faked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api import Config, FunctionCommand, Inventory, State, StringCommand
from pyinfra.api.host import Host
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from modelfleet.deploy.apply.rollout import check_knobs
from modelfleet.roles.drain import (
    connector_arguments,
    drained_restart,
    router_admin,
    wait_unrouted,
)
from tests.unit.rollout_script import run_rollout

Shell = Callable[[str, dict[str, Any]], tuple[bool, CommandOutput]]


def output(*lines: str) -> CommandOutput:
    return CommandOutput([OutputLine("stdout", line) for line in lines])


@contextmanager
def fleet(
    router_data: dict[str, Any] | None = None, config: Config | None = None
) -> Iterator[tuple[Host, Host, list[tuple[str, dict[str, Any]]]]]:
    """A backend host and a router host whose shells are faked; yields them and the router
    host's commands (with the connector arguments each got)."""
    inventory = Inventory((["gpu-1", ("router-1", router_data or {})], {}))
    state = State(inventory, config or Config())
    backend, router = inventory.get_host("gpu-1"), inventory.get_host("router-1")
    on_router: list[tuple[str, dict[str, Any]]] = []

    def router_shell(command: StringCommand, **kwargs: Any) -> tuple[bool, CommandOutput]:
        text = command.get_raw_value()
        on_router.append((text, kwargs))
        action = "undrain" if " undrain " in text else "drain"
        return True, output(f"backend gpu-1-nv {action}ed")

    router.connected = backend.connected = True  # never connects
    router.run_shell_command = router_shell  # type: ignore[method-assign]
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_host.use(backend):
        yield backend, router, on_router


def admin_actions(on_router: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return ["undrain" if " undrain " in text else "drain" for text, _ in on_router]


def run_like_pyinfra(commands: list[Any], backend: Host, shell: Shell) -> tuple[bool, str]:
    """Execute an operation's commands as pyinfra does: in order, stop at the first failure
    (a FunctionCommand fails by raising). Returns (success, the failure)."""

    def backend_shell(command: StringCommand, **kwargs: Any) -> tuple[bool, CommandOutput]:
        return shell(command.get_raw_value(), kwargs)

    backend.run_shell_command = backend_shell  # type: ignore[method-assign]
    for command in commands:
        if isinstance(command, FunctionCommand):
            try:
                command.function(*command.args, **command.kwargs)
            except Exception as exc:  # pyinfra: "Unexpected error in Python callback"
                return False, str(exc)
            continue
        text = command if isinstance(command, str) else command.get_raw_value()
        ok, out = shell(text, connector_arguments(backend))  # pyinfra: the op's own arguments
        if not ok:
            return False, out.output
    return True, ""


def restart_commands(router_host: str | None = "router-1") -> list[Any]:
    return list(
        drained_restart._inner(
            service="ollama-nv",
            backend="gpu-1-nv",
            health_url="http://127.0.0.1:11434/api/version",
            router_host=router_host,
            drain_timeout_s=5,
            health_timeout_s=1,
        )
    )


def unhealthy_after_restart(command: str, kwargs: dict[str, Any]) -> tuple[bool, CommandOutput]:
    if "curl" in command:
        return False, output("ollama-nv did not answer within 1 s after its restart")
    return True, output()


def healthy(command: str, kwargs: dict[str, Any]) -> tuple[bool, CommandOutput]:
    return True, output()


# -- a restart that fails must not leave its backend drained for good ----------------------------


def test_a_backend_whose_restart_fails_is_undrained_and_the_host_fails() -> None:
    # Before: drain, restart, the health check fails, the operation stops: the backend stays
    # drained in the router, and the next deploy (unit unchanged) never restarts nor undrains it.
    with fleet() as (backend, _, on_router):
        ok, failure = run_like_pyinfra(restart_commands(), backend, unhealthy_after_restart)
    assert not ok
    assert admin_actions(on_router) == ["drain", "undrain"]
    assert "did not answer" in failure
    assert "backend gpu-1-nv undrained anyway" in failure


def test_a_healthy_restart_is_drained_then_undrained() -> None:
    seen: list[str] = []

    def shell(command: str, kwargs: dict[str, Any]) -> tuple[bool, CommandOutput]:
        seen.append(command)
        return True, output()

    with fleet() as (backend, _, on_router):
        assert run_like_pyinfra(restart_commands(), backend, shell) == (True, "")
    assert admin_actions(on_router) == ["drain", "undrain"]
    assert seen[0] == "systemctl restart ollama-nv.service"
    assert "curl" in seen[1]


def test_without_a_router_the_restart_is_plain_commands() -> None:
    with fleet() as (backend, _, on_router):
        commands = restart_commands(router_host=None)
        assert not any(isinstance(c, FunctionCommand) for c in commands)
        ok, failure = run_like_pyinfra(commands, backend, unhealthy_after_restart)
    assert not ok and "did not answer" in failure
    assert on_router == []


# -- the admin program reads a root-only token: it must run with the router host's sudo --------


@pytest.mark.parametrize(
    ("router_data", "config"),
    [({"_sudo": True}, None), ({}, Config(SUDO=True))],
    ids=["sudo in host data", "pyinfra --sudo"],
)
def test_the_admin_program_runs_with_the_router_hosts_sudo(
    router_data: dict[str, Any], config: Config | None
) -> None:
    # Before: Host.run_shell_command got no connector arguments, so with an unprivileged SSH
    # user the program could not open /etc/modelfleet/admin-token (root, 0600): every drained
    # restart and every models-leaving wait failed with PermissionError.
    with fleet(router_data, config) as (_, router, on_router):
        router_admin("drain", "gpu-1-nv", "router-1", 11434, "/etc/modelfleet/admin-token", 5)
        with ctx_host.use(router):  # wait_unrouted runs on the router host itself
            for command in list(wait_unrouted._inner(backend="gpu-1-nv", models=["gemma3-270m"])):
                command.function(*command.args, **command.kwargs)
    assert [kwargs.get("_sudo") for _, kwargs in on_router] == [True, True]


def test_the_restart_itself_runs_with_the_backend_hosts_sudo() -> None:
    got: list[dict[str, Any]] = []

    def shell(command: str, kwargs: dict[str, Any]) -> tuple[bool, CommandOutput]:
        got.append(kwargs)
        return True, output()

    with fleet(config=Config(SUDO=True)) as (backend, _, on_router):
        assert run_like_pyinfra(restart_commands(), backend, shell) == (True, "")
    assert [kwargs.get("_sudo") for kwargs in got] == [True, True]
    assert [kwargs.get("_sudo") for _, kwargs in on_router] == [True, True]


# -- router: a new unit or secret with a new config of the same release must restart ------------


def test_a_config_change_alone_is_reloaded_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = run_rollout(tmp_path, monkeypatch, "127.0.0.1:11434", "127.0.0.1:11434")
    assert done.status == 0
    assert "reload 127.0.0.1:11434" in done.asked
    assert not any(step.startswith("restart") for step in done.did)


def test_a_config_change_with_a_new_unit_or_secret_restarts_the_router(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the script reloaded the config (same release, running, same port) and the role's
    # own restart was skipped because the rollout had changed something: the new unit (or the
    # new admin token, which the unit copies at start) never reached the running router.
    done = run_rollout(tmp_path, monkeypatch, "127.0.0.1:11434", "127.0.0.1:11434", "--restart")
    assert done.status == 0
    assert "restart mf-router" in done.did
    assert not any(step.startswith("reload") for step in done.asked)


# -- rollout knobs: a typo or a bad value is named before any host is touched -------------------


def test_a_mistyped_rollout_knob_is_named_with_host_and_closest_key() -> None:
    # Before: rollout_* is no role's prefix, so the typo was ignored and the deploy silently
    # restarted with the default (one copy kept), and a bad value raised a bare ValueError.
    data = {
        "rollout_keep_copie": 2,
        "rollout_drain_timeout_s": "2m",
        "rollout_keep_copies": 1.5,
        "router_user": "u",
    }
    assert check_knobs(data, "inv.py: host gpu-01") == [
        "inv.py: host gpu-01: key rollout_keep_copie: not a rollout knob (closest known key: "
        "rollout_keep_copies); its knobs: deploy/apply/rollout.py DEFAULTS",
        "inv.py: host gpu-01: key rollout_drain_timeout_s: expected a number >= 0, got '2m'",
        "inv.py: host gpu-01: key rollout_keep_copies: expected a number >= 0, got 1.5",
    ]


def test_good_rollout_knobs_pass() -> None:
    good = {"rollout_keep_copies": 0, "rollout_drain_timeout_s": 30.5, "other": 1}
    assert check_knobs(good, "inv.py: host a") == []
    assert check_knobs({"rollout_keep_copies": -1}, "h") == [
        "h: key rollout_keep_copies: expected a number >= 0, got -1"
    ]
