"""The demo's preflight checks: each problem names what is wrong and how to fix it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from modelfleet.deploy.lab import preflight


def test_missing_command_names_program_and_package() -> None:
    problem = preflight.check_command("definitely-not-a-program-xyz", "xyz-tools")
    assert problem is not None
    assert "definitely-not-a-program-xyz" in problem.what
    assert "xyz-tools" in problem.fix


def test_present_command_passes() -> None:
    assert preflight.check_command("sh", "dash") is None


def test_disk_short_names_path_and_need(tmp_path: Path) -> None:
    problem = preflight.check_disk(tmp_path / "not" / "yet", need_gb=1e9)
    assert problem is not None
    assert str(tmp_path) in problem.what
    assert "1000000000 GB" in problem.what


def test_disk_enough_passes(tmp_path: Path) -> None:
    assert preflight.check_disk(tmp_path, need_gb=0.0) is None


def test_port_in_use_is_reported_unless_ours() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        problem = preflight.check_port("127.0.0.1", port, "the router")
        assert problem is not None
        assert f"127.0.0.1:{port}" in problem.what and "the router" in problem.what
        assert preflight.check_port("127.0.0.1", port, "the router", ours=True) is None
    assert preflight.check_port("127.0.0.1", port, "the router") is None


@pytest.mark.parametrize("euid,expect_problem", [(0, False), (1000, True)])
def test_root_check(monkeypatch: pytest.MonkeyPatch, euid: int, expect_problem: bool) -> None:
    monkeypatch.setattr(preflight.os, "geteuid", lambda: euid)
    assert (preflight.check_root() is not None) is expect_problem


def test_run_checks_keeps_only_problems() -> None:
    bad = preflight.Problem("x", "y")
    assert preflight.run_checks([None, bad, None]) == [bad]


def test_port_check_binds_and_never_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """An address this machine does not have (podman's bridge before its first container;
    203.0.113.1 is TEST-NET-3, documentation only) is free: nothing can listen there. The check
    binds and must not connect: a connection would follow the default route off the machine."""

    def no_connect(*args: object) -> None:
        pytest.fail("the port check connected somewhere")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", no_connect)
    assert preflight.port_in_use("203.0.113.1", 8765) is False
    assert preflight.check_port("203.0.113.1", 8765, "the fleet's file server") is None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert preflight.port_in_use("127.0.0.1", port) is True
