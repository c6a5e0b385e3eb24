"""Router replicas: Redis (``router_state``) and keepalived (``router_vip``), where planned.

Each check runs once per ``--hosts`` entry; a fleet without ``router_state`` or
``router_vip`` in its inventory skips them. Secrets are read on the host (as root: podman
connections are, ssh ones take ``--sudo``) and only reach one command through its
environment or a file, never its command line.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from modelfleet.deploy.plan import HostPlan
from modelfleet.roles.knobs import role_values
from tests.infra.conftest import Deployed
from tests.infra.test_fleet_hosts import http


def state_host(deployed: Deployed) -> HostPlan:
    if deployed.plan.router_state is None:
        pytest.skip("the fleet has no router_state (a single router)")
    return deployed.plan.host(deployed.plan.router_state)


def redis_cli(host: Any, knobs: dict[str, Any], command: str) -> str:
    """redis-cli on the Redis host, authenticated with the role's ``requirepass``: the shell
    reads it from the 0600 include into REDISCLI_AUTH, so it never is on a command line,
    in testinfra's log or in this process."""
    secret = shlex.quote(knobs["redis_state_secret_config"])
    auth = f"REDISCLI_AUTH=\"$(sed -n 's/^requirepass //p' {secret})\""
    port = knobs["redis_state_port"]
    result = host.run(f"{auth} redis-cli -h 127.0.0.1 -p {port} {command}")
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def test_redis_where_planned(host: Any, node: HostPlan, deployed: Deployed) -> None:
    """Redis runs on the state host only for the fleet: bound to the fleet address and
    loopback, a password required, soft state (no snapshots, no append-only file)."""
    if node.name != state_host(deployed).name:
        pytest.skip(f"{node.name} is not the fleet's router_state host")
    knobs = role_values(deployed.data(node))
    port = knobs["redis_state_port"]
    service = host.service("redis-server")
    assert service.is_running and service.is_enabled
    listening = host.run(f"ss -Hltn 'sport = :{port}'").stdout.split("\n")
    addresses = {line.split()[3] for line in listening if line.strip()}
    fleet_address = f"{node.address}:{port}"
    assert fleet_address in addresses, addresses
    assert addresses <= {fleet_address, f"127.0.0.1:{port}", f"[::1]:{port}"}, addresses
    assert "NOAUTH" in host.run(f"redis-cli -h 127.0.0.1 -p {port} ping 2>&1").stdout
    assert redis_cli(host, knobs, "ping") == "PONG"
    assert redis_cli(host, knobs, "config get save").split() == ["save"]  # no snapshots
    assert redis_cli(host, knobs, "config get appendonly").split() == [
        "appendonly",
        "no",
    ]
    secret = host.file(knobs["redis_state_secret_config"])
    assert (secret.user, secret.mode) == ("redis", 0o600)


def test_router_reaches_redis_with_its_password(
    host: Any, node: HostPlan, deployed: Deployed
) -> None:
    """Every router reads the password from its 0600 file and gets PONG from Redis over the
    fleet network (python3, as the router host may have no redis-cli)."""
    redis = state_host(deployed)
    if not node.router:
        pytest.skip(f"{node.name} runs no router")
    knobs = role_values(deployed.data(node))
    password_file = host.file(knobs["redis_state_password_file"])
    assert (password_file.user, password_file.mode) == (knobs["router_user"], 0o600)
    ping = (
        "import os, socket\n"
        "password = open(os.environ['PASSWORD_FILE']).read().strip().encode()\n"
        f"s = socket.create_connection(({redis.address!r}, {knobs['redis_state_port']}), 5)\n"
        "s.sendall(b'AUTH ' + password + b'\\r\\nPING\\r\\n')\n"
        "data = b''\n"
        "while data.count(b'\\r\\n') < 2:\n"
        "    data += s.recv(100)\n"
        "print(data.split(b'\\r\\n')[1].decode())\n"
    )
    path = shlex.quote(knobs["redis_state_password_file"])
    result = host.run(f"PASSWORD_FILE={path} python3 -c {shlex.quote(ping)}")
    assert result.stdout.strip() == "+PONG", result.stdout + result.stderr


def test_keepalived_on_every_router(host: Any, node: HostPlan, deployed: Deployed) -> None:
    """keepalived guards the VIP on every router host, its VRRP password in a 0600 include,
    and the router answers /readyz through the VIP from here."""
    vip = deployed.plan.router_vip
    if vip is None:
        pytest.skip("the fleet has no router_vip")
    if not node.router:
        assert not host.service("keepalived").is_running, f"{node.name} runs keepalived"
        return
    knobs = role_values(deployed.data(node))
    service = host.service("keepalived")
    assert service.is_running and service.is_enabled
    config = host.file(knobs["keepalived_config"]).content_string
    assert vip in config and "track_script" in config and "nopreempt" in config
    auth = host.file(knobs["keepalived_auth_config"])
    assert (auth.user, auth.mode) == ("root", 0o600)
    address = vip.split("/")[0]
    status, _, body = http(host, "GET", f"http://{address}:{deployed.plan.router.port}/readyz")
    assert status == 200 and body["ready"] is True, body
