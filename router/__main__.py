"""``modelfleet-router --config router.yaml``: run the router in front of existing servers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

import click
from aiohttp import web

from modelfleet.router.api import ROUTER
from modelfleet.router.app import create_app
from modelfleet.router.config import ConfigError, load_config

log = logging.getLogger("modelfleet.router")

# systemd socket activation (sd_listen_fds(3)): passed sockets start at file descriptor 3.
SD_LISTEN_FDS_START = 3
LISTEN_BACKLOG = 128  # aiohttp's default


def systemd_socket() -> socket.socket | None:
    """The listening socket systemd passed in (``modelfleet-router.socket``), if any.

    With it, a restart hands clients over without refusing one: the socket stays open in
    systemd while the old process finishes what it serves, and new connections wait in its
    backlog for the next process.
    """
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=SD_LISTEN_FDS_START)


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (the config's ``listen``), when systemd passed none."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="router.yaml (see docs/router.md)",
)
@click.option("--listen", default=None, help="host:port, overrides the config's 'listen'")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--shutdown-timeout",
    default=60.0,
    show_default=True,
    help="seconds requests in flight get to finish after SIGTERM (graceful stop)",
)
@click.option(
    "--accept-grace",
    default=1.0,
    show_default=True,
    help="seconds after SIGTERM in which connections already accepted may still send a request",
)
def main(
    config_path: str,
    listen: str | None,
    log_level: str,
    shutdown_timeout: float,
    accept_grace: float,
) -> None:
    """Start the residency-aware router."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(config_path)
        if listen:
            config = config.model_copy(update={"listen": listen})
        host, port = config.host_port
        app = create_app(config, config_path)  # reads admin_token_file / api_keys_file
    except (ConfigError, ValueError) as exc:
        click.echo(f"modelfleet-router: {exc}", err=True)
        sys.exit(2)
    try:
        sock = systemd_socket()
        if sock is None:
            sock = listen_socket(host, port)
    except OSError as exc:
        click.echo(f"modelfleet-router: cannot listen on {config.listen}: {exc}", err=True)
        sys.exit(1)
    asyncio.run(serve(app, sock, shutdown_timeout, accept_grace))


async def serve(
    app: web.Application,
    sock: socket.socket,
    shutdown_timeout: float,
    accept_grace: float,
) -> None:
    """Serve on the listening ``sock`` until SIGTERM or SIGINT, then stop without cutting a
    request.

    The stop, in order: stop accepting (new connections wait in the socket's backlog, for the
    next process when the socket is systemd's); for ``accept_grace`` seconds keep serving the
    connections already accepted, each response saying ``Connection: close``; then close the
    listening socket and the idle connections, let the handlers in flight finish (up to
    ``shutdown_timeout``) and clean up.

    Why not aiohttp's ``run_app``: it closes the listening socket and then every connection
    that is not mid-request at once. A client that had connected but not sent its request yet
    lost it (a broken pipe), and so did one accepted in the same loop turn as the close (its
    transport is refused by the closed asyncio server: a reset). Here accepting stops by
    unwatching the socket, and it is closed only after the grace.

    ``handler_cancellation``: a client that disconnects cancels its handler, and with it the
    upstream request (aiohttp leaves handlers running by default).
    """
    runner = web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=shutdown_timeout, access_log=None
    )
    await runner.setup()
    site = web.SockSite(runner, sock, backlog=LISTEN_BACKLOG)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info(
            "stopping: no new connections; %.1f s for requests on accepted ones, then up to "
            "%.0f s for those in flight",
            accept_grace,
            shutdown_timeout,
        )
        app[ROUTER].stopping = True
        loop.remove_reader(sock.fileno())  # accept no more; what was accepted is served
        await asyncio.sleep(accept_grace)
        await site.stop()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
