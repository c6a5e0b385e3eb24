"""The health-check phase: a service answers HTTP 200 on a path, or the host is reported failed."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.api.operation import OperationMeta


class HttpOk(FactBase[bool]):
    """Whether ``url`` answers HTTP 200 right now (from the host itself)."""

    def requires_command(self, url: str) -> str:
        return "curl"

    def command(self, url: str) -> str:
        return f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {shlex.quote(url)} || true"

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[-1].strip() == "200"


def _changes(op: OperationMeta) -> bool:
    """Did (at execute time) or will (at prepare time) ``op`` change anything?"""
    return op.did_change() if op.is_complete() else op.will_change


@operation()
def answers(url: str, what: str, after: Sequence[OperationMeta] = (), timeout_s: int = 60):
    """
    Wait until ``url`` answers 200; fail naming ``what`` if it does not within ``timeout_s``.

    A no-op when it answers already and none of the ``after`` operations (this host's changes
    in the earlier phases) is going to change anything, so a converged fleet re-runs clean.

    + url: e.g. ``http://127.0.0.1:11434/api/version``
    + what: the service, for the error message
    + after: operations whose changes call for a fresh check
    + timeout_s: seconds to wait

    **Example:**

    .. code:: python

        answers(url="http://127.0.0.1:8080/health", what="llama-swap gpu0", after=changes)
    """
    if host.get_fact(HttpOk, url=url) and not any(_changes(op) for op in after):
        host.noop(f"{what} answers {url}")
        return
    quoted = shlex.quote(url)
    message = shlex.quote(f"{what} did not answer {url} with 200 within {timeout_s} s")
    yield (
        f"for i in $(seq {int(timeout_s)}); do "
        f"[ \"$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {quoted})\" = 200 ] "
        f"&& exit 0; sleep 1; done; echo {message} >&2; exit 1"
    )
