"""Where the stand-ins once differed from the real backends (an audit against
shared/reference/backends.md and the backends' own source): each test failed on the old
stand-in and names the source it follows."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelfleet.deploy.lab.standins import llama_swap, ollama
from tests.unit.standin_client import HOLD_TOKENS_PER_S, call, stats, wait_for
from tests.unit.test_standins_llama_swap import models_yaml, running
from tests.unit.test_standins_ollama import CATALOG, OpenStream, chat

# --------------------------------------------------------------------------- Ollama


@pytest.fixture
def ollama_standin() -> Iterator[Callable[..., ollama.RunningStandin]]:
    started: list[ollama.RunningStandin] = []

    def start(**knobs: Any) -> ollama.RunningStandin:
        knobs.setdefault("catalog", CATALOG)
        knobs.setdefault("models", [m["name"] for m in CATALOG])
        server = ollama.start_in_thread(**knobs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _ask(url: str, model: str, into: list[int]) -> None:
    into.append(chat(url, model, options={"num_predict": 1})[0])


def test_requests_waiting_for_a_slot_of_a_loaded_model_are_not_queued(
    ollama_standin: Callable[..., ollama.RunningStandin],
) -> None:
    """server/sched.go ``GetRunner``: a request for a loaded model that needs no reload goes
    straight to its runner (``useLoadedRunner``) and waits there for one of the
    OLLAMA_NUM_PARALLEL slots (llm/server.go ``s.sem.Acquire``); only a request that needs a
    load enters ``pendingReqCh``, the queue OLLAMA_MAX_QUEUE bounds. The old stand-in
    counted slot waiters against the queue: the second one got a 503."""
    url = ollama_standin(num_parallel=1, max_queue=1, tokens_per_s=HOLD_TOKENS_PER_S).url
    holder = OpenStream(url, "big")
    holder.first_line()  # "big" is loaded; its only slot is taken
    results: list[int] = []
    waiters = [threading.Thread(target=_ask, args=(url, "big", results)) for _ in range(3)]
    for n, waiter in enumerate(waiters, start=1):
        waiter.start()

        def settled(count: int = n) -> bool:  # waiting for the slot (old stand-in: a 503)
            return stats(url)["pending"] + len(results) == count

        wait_for(settled, f"waiter {n} to wait")
    holder.close()
    for waiter in waiters:
        waiter.join(timeout=30)
    assert results == [200, 200, 200]
    assert stats(url)["rejected"] == 0


def test_the_queue_holds_max_queue_loads_besides_the_one_being_scheduled(
    ollama_standin: Callable[..., ollama.RunningStandin],
) -> None:
    """``pendingReqCh`` is a channel of OLLAMA_MAX_QUEUE places and ``processPending`` takes
    the request it works on out of it (it waits outside the channel for an eviction or a
    load): with OLLAMA_MAX_QUEUE=1, one load is being scheduled, one more waits in the
    queue, and the next gets 503 ``server busy``. The old stand-in refused the second."""
    url = ollama_standin(
        vram_mb=0, max_loaded_models=1, max_queue=1, tokens_per_s=HOLD_TOKENS_PER_S
    ).url
    holder = OpenStream(url, "big")
    holder.first_line()  # "big" is loaded and busy: "mid" must wait for its eviction
    results: list[int] = []
    first = threading.Thread(target=_ask, args=(url, "mid", results))
    first.start()
    wait_for(lambda: stats(url)["pending"] == 1, "the 'mid' load to be scheduled")
    second = threading.Thread(target=_ask, args=(url, "small", results))
    second.start()
    wait_for(lambda: stats(url)["pending"] + len(results) == 2, "'small' to queue or be refused")
    status, body = chat(url, "huge")  # a third load: the queue's one place is taken
    holder.close()
    first.join(timeout=30)
    second.join(timeout=30)
    assert (status, body) == (503, {"error": ollama.MAX_QUEUE_ERROR})
    assert results == [200, 200]


@pytest.mark.parametrize("value", ["300", "-1", "1.5", "", "5x", "1h-5m"])
def test_a_request_keep_alive_string_must_be_a_go_duration(
    ollama_standin: Callable[..., ollama.RunningStandin], value: str
) -> None:
    """api/types.go ``Duration.UnmarshalJSON``: a number is seconds, a string goes through
    Go's ``time.ParseDuration``, which wants a unit (only "0" may go without): the request
    fails to bind and gin answers 400 with the parse error. The old stand-in took "300" and
    "-1" as seconds."""
    url = ollama_standin().url
    status, body = chat(url, "big", keep_alive=value)
    assert status == 400
    assert body["error"].startswith("time: ")
    assert stats(url)["loads"] == 0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("+5m", 300.0), (".5h", 1800.0), ("1.m", 60.0)],
)
def test_go_durations_the_old_stand_in_refused(value: Any, seconds: float) -> None:
    """Go's ``time.ParseDuration`` takes a sign, a leading or trailing dot and a bare "0"."""
    assert ollama.parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10m", 600.0),
        ("90", 90.0),  # envconfig.KeepAlive: a Go duration, else whole seconds
        ("-1", ollama.FOREVER_S),
        ("1.5", 300.0),  # neither: the 5m default, silently
        ("a while", 300.0),
    ],
)
def test_ollama_keep_alive_environment_as_envconfig_reads_it(value: str, seconds: float) -> None:
    """envconfig/config.go ``KeepAlive``: ``time.ParseDuration``, else ``strconv.ParseInt``
    seconds, else the 5 minute default (Ollama starts anyway). The old stand-in took "1.5"
    as 1.5 s and refused to start on "a while"."""
    assert ollama.Settings.from_env({"OLLAMA_KEEP_ALIVE": value}).keep_alive_s == seconds


# --------------------------------------------------------------------------- llama-swap


def test_upstream_path_resolves_an_alias(
    swap: Callable[..., llama_swap.RunningStandin],
) -> None:
    """internal/server ``handleUpstream``: the model in ``/upstream/<model>/...`` is resolved
    with ``RealModelName`` (ids and aliases), so ``/upstream/<alias>/health`` starts the
    aliased model. The old stand-in only knew model ids: 404."""
    config = models_yaml("a", "b").replace("  b:\n", "  b:\n    aliases: [bee, org/bee]\n")
    url = swap(config).url
    assert call(url, "/upstream/bee/health") == (200, {"status": "ok"})
    assert running(url) == {"b": "ready"}
    assert call(url, "/upstream/org/bee/health")[0] == 200
    assert call(url, "/upstream/nobody/health")[0] == 404


@pytest.mark.parametrize("ttl", [-2, -60])
def test_a_negative_ttl_other_than_minus_one_is_a_config_error(ttl: int) -> None:
    """internal/config ``LoadConfigFromReader``: ttl -1 (the default) takes globalTTL, and any
    ttl still negative after that is ``model a: invalid TTL value``. The old stand-in took
    every negative ttl as "use globalTTL"."""
    text = f"models:\n  a:\n    cmd: llama-server --port ${{PORT}}\n    ttl: {ttl}\n"
    with pytest.raises(llama_swap.ConfigError, match=f"invalid TTL value {ttl}"):
        llama_swap.parse_config(llama_swap.load_yaml(text))
