"""Operations of the Ollama role: an instance's model set, converged through the Ollama API."""

from __future__ import annotations

import json
import shlex

from pyinfra import host
from pyinfra.api import operation

from modelfleet.roles.addresses import local_host
from modelfleet.roles.ollama.facts import OllamaModels, normalize_tag

PULL_HELPER = "/usr/local/lib/modelfleet/ollama-pull.py"


@operation()
def models(
    port: int,
    wanted: list[str],
    prune: bool = False,
    helper: str = PULL_HELPER,
    wait_s: float = 60,
    bind: str = "0.0.0.0",
):
    """
    Pull the models of ``wanted`` the instance on ``port`` lacks; delete the others if ``prune``.

    Pulls go through ``POST /api/pull`` with progress lines (``ollama-pull.py``); deletions
    through ``DELETE /api/delete``. Only missing models are pulled.

    + port: the instance's API port
    + wanted: Ollama tags, e.g. ``["llama3.1:8b", "gemma3:270m"]``
    + prune: delete models the instance holds that are not in ``wanted``
    + helper: path of ``ollama-pull.py`` on the host
    + wait_s: seconds to wait for a freshly (re)started instance to answer
    + bind: the address the instance listens on (``backend_bind``); the API is called there,
      at 127.0.0.1 for a wildcard (``roles/addresses.py``)

    **Example:**

    .. code:: python

        models(name="Models of ollama-gpu0", port=11434, wanted=["gemma3:270m"], prune=True)
    """
    want = sorted({normalize_tag(tag) for tag in wanted})
    have = host.get_fact(OllamaModels, port=port, bind=bind)
    address = local_host(bind)
    present = set(have or [])
    missing = [tag for tag in want if tag not in present]
    extra = sorted(present - set(want)) if prune else []
    if not missing and not extra:
        host.noop(f"ollama on :{port} has its {len(want)} model(s)")
        return
    if missing:
        pull = ["python3", helper, "--host", address, "--port", str(port), "--wait", str(wait_s)]
        yield shlex.join([*pull, *missing])
    for tag in extra:
        body = shlex.quote(json.dumps({"model": tag}))
        yield (
            f"curl -sSf -X DELETE -H 'Content-Type: application/json' -d {body} "
            + shlex.quote(f"http://{address}:{int(port)}/api/delete")
        )
