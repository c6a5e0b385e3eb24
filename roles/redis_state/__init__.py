"""Redis from Debian's packages for the router replicas' shared soft state (one host).

1. ``redis-server`` from apt (bookworm: 7.0). Debian's ``/etc/redis/redis.conf`` stays as
   shipped; modelfleet's own config (``redis_state_config``, rendered by
   ``deploy/render.py``) is what runs, through a drop-in for Debian's ``redis-server.service``.
2. Soft state only: ``save ""`` and ``appendonly no``; the backends stay the source of truth.
3. Bound to the host's fleet-network address and loopback, ``protected-mode yes``, and a
   password (``requirepass``) in a 0600 file owned by ``redis`` that the config includes. The
   password is the fleet's controller-kept secret (``roles/secrets.py``) unless
   ``redis_state_password`` sets it; the router hosts get the same one (``roles/router``).
4. Restarted only when its config, drop-in or password changed; a re-run changes nothing.

Example (``deploy/apply/phases.py``)::

    redis_state.server(files=files, password=password)
"""

from __future__ import annotations

from collections.abc import Sequence

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, systemd
from pyinfra.operations.util import any_changed

from modelfleet.deploy.plan import RenderedFile
from modelfleet.roles.redis_state.defaults import DEFAULTS
from modelfleet.roles.router.operations import secret_file
from modelfleet.roles.units import put_rendered

SERVICE = "redis-server"


@deploy("modelfleet router state (Redis)", data_defaults=DEFAULTS)
def server(rendered: Sequence[RenderedFile], password: str) -> list[OperationMeta]:
    """Install and run Redis with ``rendered`` (its config and unit drop-in) and ``password``."""
    data = host.data
    apt.packages(
        name="Redis from Debian's packages",
        packages=list(data.redis_state_packages),
        update=True,
        cache_time=data.redis_state_apt_cache_time,
    )
    secret = secret_file(
        name=f"Redis password ({data.redis_state_secret_config})",
        path=data.redis_state_secret_config,
        content=f"requirepass {password}\n",
        owner="redis",
    )
    changes = [secret, *put_rendered(rendered)]
    dropins = [op for op, file in zip(changes[1:], rendered, strict=True) if ".d/" in file.path]
    systemd.daemon_reload(name=f"Reload systemd for {SERVICE}", _if=any_changed(*dropins))
    systemd.service(
        name=f"Restart {SERVICE} (its config or password changed)",
        service=f"{SERVICE}.service",
        restarted=True,
        _if=any_changed(*changes),
    )
    systemd.service(
        name=f"{SERVICE} enabled and running",
        service=f"{SERVICE}.service",
        running=True,
        enabled=True,
    )
    return changes
