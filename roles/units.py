"""Building blocks the backend roles share: a system user, a pinned release, a managed unit.

These are plain functions that call pyinfra operations, so they run inside a role's
``@deploy`` and their operations are named after the role.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.server import Groups
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

from modelfleet.deploy.plan import BackendInstance, RenderedFile
from modelfleet.roles.artifacts import unpacked_release, verified_download


def system_user(user: str, home: str, extra_groups: Iterable[str] = ()) -> None:
    """A system user and group with no login shell, in those ``extra_groups`` that exist."""
    existing = set(host.get_fact(Groups))  # type: ignore[arg-type]
    server.group(name=f"Group {user}", group=user, system=True)
    server.user(
        name=f"System user {user}",
        user=user,
        group=user,
        groups=sorted(g for g in extra_groups if g in existing) or None,
        append=True,
        system=True,
        home=home,
        shell="/usr/sbin/nologin",
        create_home=False,
    )
    files.directory(name=f"Home of {user}", path=home, user=user, group=user, mode="0750")


def models_directories(instances: Iterable[BackendInstance], user: str) -> None:
    """The instances' models directories, owned by the backend's user (each path once)."""
    for path in sorted({inst.models_dir for inst in instances}):
        files.directory(
            name=f"Models directory {path}", path=path, user=user, group=user, mode="0755"
        )


def pinned_release(
    what: str,
    url: str,
    sha256: str,
    root: str,
    version: str,
    link: str | None = None,
    binary: str | None = None,
) -> OperationMeta:
    """Download ``url`` (checked by sha256), unpack it to ``<root>/releases/<version>-<sha12>``
    and point ``<root>/current`` at it; ``link`` (e.g. /usr/local/bin/ollama) ->
    ``<current>/binary``.

    The sha256 prefix is in the directory name because a release directory, once unpacked, is
    never touched again: an archive corrected under the same version (another URL and sha256)
    gets a directory of its own and goes live, where it would have been downloaded and ignored.

    Returns the ``current`` symlink operation: it changes when the live version changes.
    """
    archive = f"{root}/downloads/{posixpath.basename(url.split('?', 1)[0])}"
    release_dir = f"{root}/releases/{version}-{sha256[:12]}"
    verified_download(name=f"Download {what} {version}", src=url, dest=archive, sha256=sha256)
    unpacked_release(name=f"Unpack {what} {version}", archive=archive, dest=release_dir)
    current = files.link(
        name=f"Make {what} {version} the current release",
        path=f"{root}/current",
        target=release_dir,
    )
    if link and binary:
        files.link(name=f"Link {link}", path=link, target=f"{root}/current/{binary}")
    return current


def put_rendered(rendered: Iterable[RenderedFile]) -> list[OperationMeta]:
    """Upload the files ``deploy/render.py`` made for this host, each with its own mode.

    Example::

        configs = put_rendered(files)  # e.g. /etc/keepalived/keepalived.conf
        systemd.service(..., reloaded=True, _if=any_changed(*configs))
    """
    return [
        files.put(
            name=f"Config {file.path}",
            src=StringIO(file.content),
            dest=file.path,
            mode=file.mode,
            create_remote_dir=True,
        )
        for file in rendered
    ]


# Given the unit and the operations whose change calls for a restart, adds the restart itself
# (e.g. a drained, batched restart later in the deploy: deploy/apply/rollout.py).
RestartHook = Callable[[str, list[OperationMeta]], None]


def managed_unit(
    service: str,
    unit_text: str,
    config_files: Iterable[tuple[str, str]] = (),
    config_owner: str = "root",
    restart_on_config: bool = True,
    also_restart_when: Iterable[OperationMeta] = (),
    restart: RestartHook | None = None,
) -> tuple[OperationMeta, list[OperationMeta]]:
    """Install ``<service>.service`` and its config files; keep it enabled and running.

    The unit is restarted only when its own unit file changed, or one of its config files
    changed and ``restart_on_config`` is set, or one of ``also_restart_when`` changed (a new
    release): never because another instance on the host changed. ``restart`` takes the
    restart over (called with the service and those triggers); by default it happens here.

    Returns (the unit file operation, the config file operations).
    """
    config_ops = [
        files.put(
            name=f"Config {path}",
            src=StringIO(text),
            dest=path,
            user="root",
            group=config_owner,
            mode="0640",
        )
        for path, text in config_files
    ]
    unit = files.put(
        name=f"Unit {service}.service",
        src=StringIO(unit_text),
        dest=f"/etc/systemd/system/{service}.service",
        mode="0644",
    )
    systemd.daemon_reload(name=f"Reload systemd for {service}", _if=unit.did_change)
    triggers = [unit, *list(also_restart_when)]
    if restart_on_config:
        triggers += config_ops
    if restart is not None:
        restart(service, triggers)
    else:
        systemd.service(
            name=f"Restart {service} (its unit or config changed)",
            service=f"{service}.service",
            restarted=True,
            _if=any_changed(*triggers),
        )
    systemd.service(
        name=f"{service} enabled and running",
        service=f"{service}.service",
        running=True,
        enabled=True,
    )
    return unit, config_ops


class ManagedUnits(FactBase[list[str]]):
    """Unit names (without ``.service``) in /etc/systemd/system that a modelfleet role wrote,
    i.e. whose first line says ``Managed by modelfleet``, sorted."""

    def command(self) -> str:
        return (
            "for f in /etc/systemd/system/*.service; do "
            '[ -f "$f" ] && head -n1 "$f" | grep -q "Managed by modelfleet" '
            '&& basename "$f" .service; done; true'
        )

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        return sorted(line.strip() for line in output if line.strip())


@operation()
def retired_units(prefixes: list[str], keep: list[str]):
    """
    Stop, disable and delete backend units the plan no longer has (e.g. after a GPU change).

    + prefixes: unit name prefixes the backend roles use (``ollama-``, ``llama-swap-`` ...)
    + keep: the plan's unit names on this host

    **Example:**

    .. code:: python

        retired_units(prefixes=["ollama-"], keep=["ollama-rtx-4090"])
    """
    gone = [
        unit
        for unit in host.get_fact(ManagedUnits)
        if unit.startswith(tuple(prefixes)) and unit not in keep
    ]
    if not gone:
        host.noop("no retired backend units")
        return
    for unit in gone:
        yield StringCommand("systemctl", "disable", "--now", f"{unit}.service")
        yield StringCommand("rm", "-f", f"/etc/systemd/system/{unit}.service")
    yield "systemctl daemon-reload"
