"""Operations of the router role: install a release into its own venv, roll it out safely."""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from collections.abc import Callable
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import (
    FileUploadCommand,
    FunctionCommand,
    OperationError,
    StringCommand,
    operation,
)
from pyinfra.facts.files import File, Link, Sha256File
from pyinfra.facts.systemd import SystemdStatus

from modelfleet.roles.addresses import local_host
from modelfleet.roles.router.facts import PythonVersion, RouterReady


@operation()
def release(
    tarball: str,
    release_dir: str,
    controller_python: str,
    package: str = "modelfleet",
    build: Callable[[], Any] | None = None,
):
    """
    Install a wheelhouse tarball into the versioned venv ``release_dir``, once: the project
    without its dependencies, then only the requirements the tarball's ``requirements.txt``
    names (the router's own; see ``wheelhouse.py``).

    The venv is built in place and marked complete by ``.installed`` as its last step; a
    half-built one (no marker) is removed and built again.

    + tarball: path of the wheelhouse tarball on the controller (see ``wheelhouse.py``)
    + build: makes ``tarball`` on the controller when the operation runs (not under ``--dry``,
      and not when the release is installed already)
    + release_dir: e.g. ``/opt/modelfleet/releases/0.1.0-3f2a9c1b7d04``
    + controller_python: ``major.minor`` the wheels were built for; the host must match
    + package: the distribution to install from the wheelhouse

    **Example:**

    .. code:: python

        release(
            name="Install router release 0.1.0-3f2a9c1b7d04",
            tarball=str(wheelhouse_path()),
            build=build_wheelhouse,
            release_dir="/opt/modelfleet/releases/0.1.0-3f2a9c1b7d04",
            controller_python="3.11",
        )
    """
    marker = f"{release_dir}/.installed"
    if host.get_fact(File, path=marker):
        host.noop(f"release {posixpath.basename(release_dir)} is installed")
        return
    host_python = host.get_fact(PythonVersion)
    # During the first prepare python3 may still be missing; apt installs it before this runs.
    if host_python and host_python != controller_python:
        raise OperationError(
            f"python3 is {host_python} but the router wheels were built with "
            f"{controller_python}; run the deploy from a controller with Python {host_python}"
        )
    wheels = f"{release_dir}.wheels"
    remote_tar = f"{wheels}.tar"
    quoted_dir, quoted_wheels = shlex.quote(release_dir), shlex.quote(wheels)
    yield f"rm -rf {quoted_dir} {quoted_wheels} && mkdir -p {quoted_wheels}"
    if build is not None:
        yield FunctionCommand(build, (), {})
    yield FileUploadCommand(tarball, remote_tar)
    yield f"tar -xf {shlex.quote(remote_tar)} -C {quoted_wheels} && rm -f {shlex.quote(remote_tar)}"
    yield f"python3 -m venv {quoted_dir}"
    pip = (
        f"{quoted_dir}/bin/pip install -q --no-index --disable-pip-version-check "
        f"--find-links {quoted_wheels}"
    )
    yield f"{pip} --no-deps {shlex.quote(package)}"
    yield f"{pip} -r {quoted_wheels}/requirements.txt"
    yield f"rm -rf {quoted_wheels} && touch {shlex.quote(marker)}"


@operation()
def rollout(
    release_dir: str,
    config: str,
    config_path: str,
    listen_port: int,
    service: str,
    user: str,
    token_path: str,
    side_port: int,
    timeout_s: float = 60,
    root: str = "/opt/modelfleet",
    script: str = "/usr/local/lib/modelfleet/router-rollout.py",
    keep_releases: int = 3,
    restart: bool = False,
    listen_bind: str = "0.0.0.0",
):
    """
    Make ``release_dir`` + ``config`` the live router, only if it passes ``/readyz`` first.

    Nothing happens when ``<root>/current`` already points at ``release_dir``, the live config
    has the same content and the service answers ``/readyz``. Otherwise the config goes to
    ``<config_path>.next`` and ``router-rollout.py`` tries the pair on ``side_port`` before
    switching; a pair that fails leaves the running router as it was (and fails this operation).

    + release_dir: an installed release (see ``release``)
    + config: the rendered ``router.yaml`` for the whole fleet
    + config_path: where the live config lives
    + listen_port: the port in ``config``'s ``listen``
    + listen_bind: the host in ``config``'s ``listen``: the router is called there on this
      host (127.0.0.1 for a wildcard, ``roles/addresses.py``)
    + service/user: the systemd unit and the user it runs as
    + token_path: root-only admin token file, passed to the unit with ``LoadCredential=``
    + side_port: port the candidate is tried on
    + timeout_s: seconds each ``/readyz`` check may take
    + keep_releases: releases left on disk afterwards, the live one included
    + restart: the unit or a secret the service reads when it starts changed too: restart the
      service where a config change alone would only be re-read (``POST /admin/reload``)

    **Example:**

    .. code:: python

        rollout(
            name="Roll out the router",
            release_dir="/opt/modelfleet/releases/0.1.0-3f2a9c1b7d04",
            config=router_yaml,
            config_path="/etc/modelfleet/router.yaml",
            listen_port=11434,
            service="modelfleet-router",
            user="modelfleet",
            token_path="/etc/modelfleet/admin-token",
            side_port=18434,
        )
    """
    wanted_sha = hashlib.sha256(config.encode()).hexdigest()
    current = host.get_fact(Link, path=f"{root}/current")
    live_release = current["link_target"] if current else None
    live_sha = host.get_fact(Sha256File, path=config_path)
    active = host.get_fact(SystemdStatus, services=f"{service}.service").get(f"{service}.service")
    if (
        live_release == release_dir
        and live_sha == wanted_sha
        and active
        and host.get_fact(RouterReady, port=listen_port, bind=listen_bind)
    ):
        host.noop(f"{service} runs {posixpath.basename(release_dir)} with this config and is ready")
        return

    candidate = f"{config_path}.next"
    call_host = local_host(listen_bind)
    yield FileUploadCommand(StringIO(config), candidate)
    yield StringCommand("chown", f"root:{user}", candidate)
    yield StringCommand("chmod", "0640", candidate)
    yield " ".join(
        shlex.quote(part)
        for part in (
            f"{release_dir}/bin/python",
            script,
            "--release",
            release_dir,
            "--root",
            root,
            "--config",
            config_path,
            "--candidate",
            candidate,
            "--service",
            service,
            "--user",
            user,
            "--token",
            token_path,
            "--side-port",
            str(side_port),
            "--timeout",
            str(timeout_s),
            "--keep",
            str(keep_releases),
            *(["--restart"] if restart else []),
            # only when it is not the script's default: a script a deploy left on the host
            # before it knew --call-host runs the withdrawal step of the next deploy
            *(["--call-host", call_host] if call_host != "127.0.0.1" else []),
        )
    )


@operation()
def generated_secret(path: str, nbytes: int = 32):
    """
    Write a random token to ``path`` (mode 0600, root) unless the file already has one.

    The token is made on the host, so it never crosses the controller or a log line.

    + path: the secret file
    + nbytes: random bytes behind the token (URL-safe base64)

    **Example:**

    .. code:: python

        generated_secret(name="Admin token", path="/etc/modelfleet/admin-token")
    """
    info = host.get_fact(File, path=path)
    if info and info.get("size"):
        host.noop(f"{path} already holds a token")
        return
    quoted = shlex.quote(path)
    yield (
        f"umask 077 && head -c {int(nbytes)} /dev/urandom | base64 -w0 | tr '+/' '-_' "
        f"| tr -d '=' > {quoted}.tmp && mv -f {quoted}.tmp {quoted}"
    )


@operation()
def secret_file(path: str, content: str, owner: str = "root"):
    """
    Write ``content`` to ``path`` as a file only ``owner`` can read (0600), compared by
    sha256 only.

    Unlike ``files.put`` it never shows the content, not even with ``--diff``.

    + path: the secret file
    + content: the secret
    + owner: user (and group) that owns it, e.g. the service that reads it

    **Example:**

    .. code:: python

        secret_file(name="Admin token", path="/etc/modelfleet/admin-token", content=token)
    """
    wanted = hashlib.sha256(content.encode()).hexdigest()
    info = host.get_fact(File, path=path)
    if (
        info
        and host.get_fact(Sha256File, path=path) == wanted
        and info.get("mode") == 600
        and info.get("user") == owner
    ):
        host.noop(f"{path} holds the wanted secret")
        return
    quoted_owner = shlex.quote(owner)
    yield f"install -m 0600 -o {quoted_owner} -g {quoted_owner} /dev/null {shlex.quote(path)}"
    yield FileUploadCommand(StringIO(content), path)
    yield StringCommand("chown", f"{owner}:{owner}", path)
    yield StringCommand("chmod", "0600", path)
