"""``modelfleet-router --config router.yaml``: run the router in front of existing servers."""

from __future__ import annotations

import logging
import sys

import click
from aiohttp import web

from router.app import create_app
from router.config import ConfigError, load_config


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
def main(config_path: str, listen: str | None, log_level: str) -> None:
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
    # upstream request (aiohttp leaves handlers running by default)
    web.run_app(app, host=host, port=port, handler_cancellation=True, access_log=None, print=None)


if __name__ == "__main__":
    main()
