"""Operations of the llama-server role."""

from __future__ import annotations

import shlex

from pyinfra.api import operation

from modelfleet.roles.addresses import local_host


@operation(is_idempotent=False)
def presets_reloaded(port: int, retries: int = 30, bind: str = "0.0.0.0"):
    """
    Make a router-mode llama-server re-read its presets file (``GET /models?reload=1``).

    Models whose preset changed or went away are unloaded; the others keep running. Run it
    with ``_if=`` on the presets file operation.

    + port: the server's port
    + retries: seconds to wait for a server that is still starting
    + bind: the address it listens on (``backend_bind``): it is called there, at 127.0.0.1 for
      a wildcard (``roles/addresses.py``)

    **Example:**

    .. code:: python

        presets_reloaded(port=8080, _if=presets.did_change)
    """
    url = f"http://{local_host(bind)}:{int(port)}/models?reload=1"
    yield (
        f"curl -sSf -o /dev/null --retry {int(retries)} --retry-connrefused --retry-delay 1 "
        + shlex.quote(url)
    )
