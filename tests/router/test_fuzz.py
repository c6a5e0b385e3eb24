"""Issue 9, case 3 as a property: no input makes the router itself answer 5xx.

Hypothesis throws bodies at every client POST endpoint (arbitrary JSON, objects with the
endpoint's own field names holding values of every type, raw bytes, odd headers) and odd
model names and query strings at the GET ones. The router runs in a thread in front of an
Ollama stand-in (passthrough) and a llama-swap stand-in
(Ollama -> OpenAI translation), on loopback. A 5xx is allowed only when it is the backend's
own answer passed on (``X-Modelfleet-Reason: backend-error``) or the router's report of a
backend failure (``backend-failed``); never from the router's own code. The number of
examples is bounded (``MODELFLEET_FUZZ_EXAMPLES``, default 300) so CI stays fast.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.deploy.lab.standins import llama_swap as swap_standin
from modelfleet.deploy.lab.standins import ollama as ollama_standin
from modelfleet.router.app import create_app
from tests.router.conftest import ADMIN_TOKEN, router_config

EXAMPLES = int(os.environ.get("MODELFLEET_FUZZ_EXAMPLES", "300"))
OLLAMA_MODEL, SWAP_MODEL, EMBED_MODEL = "qwen2.5:0.5b", "small", "nomic-embed-text:latest"
SWAP_CONFIG = {
    "models": {"small": {"cmd": "llama-server -m s.gguf --port ${PORT}", "metadata": {}}}
}
# what the router itself may answer with a 5xx: a backend's own error passed on, or its
# report that every backend it tried failed
BACKEND_REASONS = {"backend-error", "backend-failed"}


class RouterThread:
    """The router app on 127.0.0.1:<free port>, in its own event loop and thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, handler_cancellation=True)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture(scope="module")
def fleet() -> Iterator[RouterThread]:
    ollama = ollama_standin.start_in_thread(models=[OLLAMA_MODEL, EMBED_MODEL])
    swap = swap_standin.start_in_thread(SWAP_CONFIG)
    config = router_config(
        [
            {"name": "ollama", "url": ollama.url, "kind": "ollama"},
            {"name": "swap", "url": swap.url, "kind": "llama-swap"},
        ],
        # keep both in rotation whatever the fuzzer makes them answer: this test is about
        # the router's own answers
        health={"fail_threshold": 10_000, "error_rate_min_errors": 10_000},
        api_keys=["client-key"],
        first_byte_timeout_s=10,
        load_timeout_s=10,
    )
    running = RouterThread(create_app(config))
    yield running
    running.stop()
    swap.stop()
    ollama.stop()


# -- strategies ------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
models = st.one_of(
    st.sampled_from([OLLAMA_MODEL, SWAP_MODEL, EMBED_MODEL, "qwen2.5", "nope"]),
    st.sampled_from([OLLAMA_MODEL, SWAP_MODEL, SWAP_MODEL]),
    json_values,
)
texts = st.one_of(st.text(max_size=20), st.text(max_size=20), json_values)
durations = st.one_of(
    st.sampled_from(["", "5m", "-1", "1h30m", "0", "x", "-5s", "10ms", 300, -1, 0]),
    st.text(alphabet="1.+-sm", max_size=4),  # near-durations: ".s", "+", "1.1.s"
    st.text(alphabet="1.+-sm", max_size=4),
    json_values,
)


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right type (so requests get deep into the router), sometimes anything."""
    return st.one_of(values, values, values, values, json_values)


message = st.fixed_dictionaries(
    {},
    optional={
        "role": maybe(st.sampled_from(["user", "assistant", "system", "tool"])),
        "content": texts,
        "images": maybe(st.lists(st.text(max_size=8), max_size=2)),
        "tool_calls": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "function": maybe(
                            st.fixed_dictionaries(
                                {}, optional={"name": texts, "arguments": json_values}
                            )
                        )
                    },
                ),
                max_size=2,
            )
        ),
        "tool_name": texts,
    },
)
messages = maybe(st.lists(maybe(message), max_size=3))
options = maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "num_predict": maybe(st.integers(0, 3)),
            "temperature": json_values,
            "stop": json_values,
        },
    )
)
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "/api/chat": {"messages": messages, "keep_alive": durations, "options": options}
    | {"format": json_values, "tools": json_values, "think": json_values},
    "/api/generate": {"prompt": texts, "keep_alive": durations, "options": options}
    | {"images": maybe(st.lists(st.text(max_size=8))), "raw": json_values, "suffix": texts}
    | {"system": texts, "format": json_values, "context": json_values},
    "/api/embed": {
        "input": maybe(st.lists(st.text(max_size=8), max_size=2)),
        "dimensions": json_values,
    },
    "/api/embeddings": {"prompt": texts},
    "/api/show": {"name": models, "verbose": json_values},
    "/api/pull": {"insecure": json_values, "backend": maybe(st.sampled_from(["ollama", "swap"]))},
    "/api/push": {"insecure": json_values},
    "/api/create": {"from": texts},
    "/api/copy": {"source": models, "destination": texts},
    "/api/delete": {"name": models},
    "/v1/chat/completions": {"messages": messages, "max_tokens": maybe(st.integers(0, 3))},
    "/v1/completions": {"prompt": texts, "max_tokens": maybe(st.integers(0, 3))},
    "/v1/embeddings": {"input": texts},
    "/v1/responses": {"input": texts, "instructions": texts, "max_output_tokens": json_values},
    "/v1/messages": {"messages": messages, "max_tokens": json_values, "system": texts},
}
# well-typed values only: these requests get past validation and exercise the proxy path
good_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"]), "content": st.text(max_size=20)},
    optional={"images": st.lists(st.text(max_size=8), max_size=1)},
)
good_messages = st.lists(good_message, min_size=1, max_size=3)
good_options = st.fixed_dictionaries(
    {"num_predict": st.integers(0, 3)}, optional={"seed": st.integers(0, 9)}
)
VALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "/api/chat": {"messages": good_messages, "options": good_options, "keep_alive": durations},
    "/api/generate": {
        "prompt": st.text(max_size=20),
        "options": good_options,
        "raw": st.booleans(),
        "keep_alive": durations,
    },
    "/api/embed": {"input": st.text(max_size=20) | st.lists(st.text(max_size=8), max_size=2)},
    "/api/embeddings": {"prompt": st.text(max_size=20)},
    "/v1/chat/completions": {"messages": good_messages, "max_tokens": st.integers(1, 3)},
    "/v1/completions": {"prompt": st.text(max_size=20), "max_tokens": st.integers(1, 3)},
    "/v1/embeddings": {"input": st.text(max_size=20)},
    "/v1/responses": {"input": st.text(max_size=20), "max_output_tokens": st.integers(1, 3)},
    "/v1/messages": {"messages": good_messages, "max_tokens": st.integers(1, 3)},
}
ENDPOINTS = sorted(FIELDS)
GET_ENDPOINTS = ["/", "/api/version", "/api/tags", "/api/ps", "/v1/models", "/v1/models/"]
MAIN_FIELD = {  # present in most examples, so most requests reach a backend
    "/api/chat": "messages",
    "/api/generate": "prompt",
    "/api/embed": "input",
    "/api/embeddings": "prompt",
    "/api/copy": "source",
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
    "/v1/responses": "input",
    "/v1/messages": "messages",
}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes, dict[str, bytes]]:
    path = draw(st.sampled_from([*ENDPOINTS, *GET_ENDPOINTS]))
    method = "DELETE" if path == "/api/delete" else "POST"
    shape = draw(st.sampled_from(["valid", "valid", "fields", "fields", "json", "bytes"]))
    if path in GET_ENDPOINTS:  # no body: odd model names and query strings instead
        method, body = "GET", b""
        if path == "/v1/models/":
            path += urllib.parse.quote(draw(st.text(min_size=1, max_size=20)), safe="")
        query = draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2))
        if query:
            path += "?" + urllib.parse.urlencode(query)
    elif shape == "valid" and path in VALID:
        model = draw(st.sampled_from([OLLAMA_MODEL, SWAP_MODEL, EMBED_MODEL]))
        valid = {"model": st.just(model), **VALID[path]}
        chosen = draw(st.fixed_dictionaries(valid, optional={"stream": st.booleans()}))
        body = json.dumps(chosen).encode()
    elif shape in ("fields", "valid"):
        fields = {"stream": maybe(st.booleans()), **FIELDS[path]}
        required = {"model": models}
        main = MAIN_FIELD.get(path)
        if main:
            required[main] = fields.pop(main)
        chosen = draw(st.fixed_dictionaries(required, optional=fields))
        body = json.dumps(chosen).encode()
    elif shape == "json":
        body = json.dumps(draw(json_values)).encode()
    else:
        body = draw(st.binary(max_size=40))
    admin = b"Bearer " + ADMIN_TOKEN.encode()
    key = draw(st.sampled_from([b"Bearer client-key"] * 4 + [admin, b"Bearer \xff\xfe"]))
    headers = {"Authorization": key, "Content-Type": b"application/json"}
    if draw(st.integers(0, 9)) == 7:  # (0 is what hypothesis tries most)
        headers["Content-Encoding"] = b"gzip"
    return method, path, body, headers


# -- the property ----------------------------------------------------------------------------

TALLY: Counter[str] = Counter()


def send(
    port: int, method: str, path: str, body: bytes, headers: dict[str, bytes]
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, path)
        for name, value in {**headers, "Content-Length": str(len(body)).encode()}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Modelfleet-Reason") or "", resp.read()
    finally:
        conn.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(request=requests())
def test_no_input_makes_the_router_answer_5xx(fleet: RouterThread, request: tuple) -> None:
    method, path, body, headers = request
    status, reason, answer = send(fleet.port, method, path, body, headers)
    TALLY["examples"] += 1
    TALLY[f"{status // 100}xx"] += 1
    if os.environ.get("MODELFLEET_FUZZ_VERBOSE"):
        print(status, reason, path, answer[:120])
    if status >= 500:
        TALLY[f"{status} {reason}" if reason in BACKEND_REASONS else "router 5xx"] += 1
        assert reason in BACKEND_REASONS, (status, reason, answer[:300], path, body[:300])
    if status >= 400:  # every error is JSON, in the calling API's shape
        error = json.loads(answer)["error"]
        assert isinstance(error, dict if path.startswith("/v1/") else str), answer[:300]
    if method == "GET" and status == 200 and not path.startswith("/?") and path != "/":
        assert isinstance(json.loads(answer), dict)


def test_fuzz_tally_report() -> None:
    """Prints what the property test saw (run with ``-s``); it ran first, in this module."""
    print(f"\nfuzz tally: {dict(TALLY)}")
    assert TALLY["examples"] == EXAMPLES or TALLY["examples"] > 0
    assert TALLY["router 5xx"] == 0
