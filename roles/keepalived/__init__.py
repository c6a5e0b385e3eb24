"""keepalived from Debian's packages on the router hosts: the fleet's virtual IP (VRRP).

1. ``keepalived`` from apt. VRRP runs in unicast (``unicast_src_ip`` / ``unicast_peer``: the
   other router hosts' addresses), so it works on networks without multicast.
2. The VIP (``router_vip`` in group_data/all.py) sits on one router; a track script asks the
   local router's ``/readyz`` every ``keepalived_check_interval_s`` and after
   ``keepalived_check_fall`` failures the VIP moves to a router that answers.
3. Every router is ``state BACKUP`` with ``nopreempt``; the priorities (150, 140, ... in the
   router group's order) decide the first election only. A router that comes back does not take
   the VIP back, so a flapping replica costs one failover, not two.
4. The VRRP password (PASS auth, 8 characters; VRRP carries it in clear: it keeps other VRRP
   groups out, it is no protection against an attacker on the segment) lives in a 0600 root
   file the config includes: the fleet's controller-kept secret (``roles/secrets.py``) unless
   ``keepalived_auth_pass`` sets it.
5. keepalived reloads (SIGHUP, the VIP stays) when its config or password changed; a re-run
   changes nothing.

Needs ``CAP_NET_ADMIN`` and ``CAP_NET_RAW`` (containers: ``--cap-add NET_ADMIN --cap-add
NET_RAW``) and a network that carries VRRP (IP protocol 112) and gratuitous ARP between the
routers: see docs/deploy.md for where that is not the case, and the DNS alternative.

Example (``deploy/apply/phases.py``)::

    keepalived.vip(rendered=files, auth_pass=password)
"""

from __future__ import annotations

from collections.abc import Sequence

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, systemd
from pyinfra.operations.util import any_changed

from modelfleet.deploy.plan import RenderedFile
from modelfleet.roles.keepalived.defaults import DEFAULTS
from modelfleet.roles.router.operations import secret_file
from modelfleet.roles.units import put_rendered

SERVICE = "keepalived"


def auth_block(password: str) -> str:
    """The included ``authentication`` block (PASS auth uses at most 8 characters)."""
    if not password or len(password) > 8 or any(c.isspace() or c in "{}\"'#!" for c in password):
        raise ValueError("keepalived_auth_pass: 1-8 characters, no spaces, quotes, braces, # or !")
    return f"authentication {{\n    auth_type PASS\n    auth_pass {password}\n}}\n"


@deploy("modelfleet router VIP (keepalived)", data_defaults=DEFAULTS)
def vip(rendered: Sequence[RenderedFile], auth_pass: str) -> list[OperationMeta]:
    """Install keepalived and hold the fleet's VIP with ``rendered`` (its keepalived.conf)."""
    data = host.data
    apt.packages(
        name="keepalived from Debian's packages",
        packages=list(data.keepalived_packages),
        update=True,
        cache_time=data.keepalived_apt_cache_time,
    )
    secret = secret_file(
        name=f"VRRP password ({data.keepalived_auth_config})",
        path=data.keepalived_auth_config,
        content=auth_block(auth_pass),
    )
    configs = put_rendered(rendered)
    systemd.service(
        name=f"{SERVICE} enabled and running",
        service=f"{SERVICE}.service",
        running=True,
        enabled=True,
    )
    # After "running": a first install starts it with the new config already in place.
    systemd.service(
        name=f"Reload {SERVICE} (its config or password changed)",
        service=f"{SERVICE}.service",
        reloaded=True,
        _if=any_changed(secret, *configs),
    )
    return [secret, *configs]
