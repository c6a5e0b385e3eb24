"""Where the deploy's own calls on a host reach that host's services: their bind address.

A backend (``backend_bind``) or the router (``router.bind``) bound to one address accepts no
connection on another: a socket on ``10.0.0.5:11434`` refuses ``127.0.0.1:11434``. So every
call the deploy makes on a host to its own services (health waits, Ollama's API, llama-server's
preset reload, the router's ``/readyz`` and admin API) goes to the bind address, and to
``127.0.0.1`` only when the service listens on every address.

Example::

    f"http://{local_host(inst.bind)}:{inst.port}/api/version"
    # bind 0.0.0.0 -> http://127.0.0.1:11434/..., 10.0.0.5 -> http://10.0.0.5:11434/...,
    # fd00::5 -> http://[fd00::5]:11434/...
"""

from __future__ import annotations

import ipaddress

WILDCARDS = frozenset({"", "*"})


def _bare(bind: str) -> str:
    return bind.strip().removeprefix("[").removesuffix("]")


def is_wildcard(bind: str) -> bool:
    """Whether ``bind`` listens on every address (``0.0.0.0``, ``::``, ``[::]``, ``""``, ``*``)."""
    bare = _bare(bind)
    if bare in WILDCARDS:
        return True
    try:
        return ipaddress.ip_address(bare).is_unspecified
    except ValueError:
        return False  # a host name


def bracketed(bind: str) -> str:
    """``bind`` as the host of a URL or of ``host:port``: an IPv6 literal in brackets."""
    bare = _bare(bind)
    try:
        return f"[{bare}]" if ipaddress.ip_address(bare).version == 6 else bare
    except ValueError:
        return bare  # a host name (or empty): as it is


def local_host(bind: str) -> str:
    """The host part of a URL (or ``host:port``) that reaches, from the host itself, a service
    listening on ``bind``: ``127.0.0.1`` for a wildcard (``0.0.0.0``, ``::``, ``[::]``, ``""``,
    ``*``), else ``bind`` itself, an IPv6 literal in brackets."""
    return "127.0.0.1" if is_wildcard(bind) else bracketed(bind)


def listen_address(bind: str, port: int) -> str:
    """``bind:port`` as the router's ``listen`` and systemd's ``ListenStream=`` read it.

    Example::

        listen_address("0.0.0.0", 11434), listen_address("::", 11434)
        # ("0.0.0.0:11434", "[::]:11434")   (":::11434" is no address for systemd)
    """
    return f"{bracketed(bind)}:{port}"
