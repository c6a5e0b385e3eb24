"""``modelfleet-router --config router.yaml``: run the router in front of existing servers."""

from __future__ import annotations

import logging
import os
import socket
import sys

import click
from aiohttp import web

from modelfleet.router.app import create_app
from modelfleet.router.config import ConfigError, load_config

# systemd socket activation (sd_listen_fds(3)): passed sockets start at file descriptor 3.
SD_LISTEN_FDS_START = 3


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
def main(config_path: str, listen: str | None, log_level: str, shutdown_timeout: float) -> None:
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
    # handler_cancellation: a client that disconnects cancels its handler, and with it the
    # upstream request (aiohttp leaves handlers running by default). On SIGTERM aiohttp stops
    # accepting, lets the handlers in flight finish (up to shutdown_timeout), then cleans up.
    sock = systemd_socket()
    where = {"sock": sock} if sock is not None else {"host": host, "port": port}
    web.run_app(
        app,
        **where,
        handler_cancellation=True,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
