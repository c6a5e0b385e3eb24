"""Operations of the llama-server role."""

from __future__ import annotations

from pyinfra.api import operation


@operation(is_idempotent=False)
def presets_reloaded(port: int, retries: int = 30):
    """
    Make a router-mode llama-server re-read its presets file (``GET /models?reload=1``).

    Models whose preset changed or went away are unloaded; the others keep running. Run it
    with ``_if=`` on the presets file operation.

    + port: the server's port on 127.0.0.1
    + retries: seconds to wait for a server that is still starting

    **Example:**

    .. code:: python

        presets_reloaded(port=8080, _if=presets.did_change)
    """
    yield (
        f"curl -sSf -o /dev/null --retry {int(retries)} --retry-connrefused --retry-delay 1 "
        f"'http://127.0.0.1:{int(port)}/models?reload=1'"
    )
