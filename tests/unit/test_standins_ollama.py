"""The Ollama stand-in behaves like Ollama (shared/reference/backends.md, section c)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from modelfleet.deploy.lab.standins import ollama
from modelfleet.deploy.lab.standins.ollama import (
    RunningStandin,
    Settings,
    parse_duration,
    start_in_thread,
)
from tests.unit.standin_client import HOLD_TOKENS_PER_S, call, stats, wait_for

# Small, round sizes so VRAM arithmetic in the tests is obvious.
CATALOG = [
    {"name": "big", "size_mb": 2000},
    {"name": "mid", "size_mb": 1500},
    {"name": "small", "size_mb": 1500},
    {"name": "huge", "size_mb": 6000},
    {"name": "embedder", "size_mb": 100, "capabilities": ["embedding"], "embedding_length": 8},
]
ALL = [m["name"] for m in CATALOG]


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def chat(url: str, model: str, **extra: Any) -> tuple[int, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    return call(url, "/api/chat", {**body, **extra})


def ps_names(url: str) -> list[str]:
    return sorted(m["name"] for m in call(url, "/api/ps")[1]["models"])


class OpenStream:
    """A streaming /api/chat request left open, to hold a slot while the test looks around."""

    def __init__(self, url: str, model: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        body = {"model": model, "messages": [{"role": "user", "content": "hold"}]}
        self.conn.request("POST", "/api/chat", json.dumps(body))

    def first_line(self) -> dict[str, Any]:
        """Wait for the response (the request holds a slot from here on) and its first line."""
        resp = self.conn.getresponse()
        assert resp.status == 200, resp.read()
        return json.loads(resp.readline())

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def standin() -> Iterator[Callable[..., RunningStandin]]:
    started: list[RunningStandin] = []

    def start(**knobs: Any) -> RunningStandin:
        knobs.setdefault("catalog", CATALOG)
        knobs.setdefault("models", ALL)
        server = start_in_thread(**knobs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --------------------------------------------------------------------------- basic API


def test_root_version_and_tags(standin: Callable[..., RunningStandin]) -> None:
    url, _stop = standin(models=["big"])
    assert call(url, "/") == (200, "Ollama is running")
    assert call(url, "/", method="HEAD") == (200, "")
    assert call(url, "/api/version") == (200, {"version": ollama.VERSION})
    status, tags = call(url, "/api/tags")
    assert status == 200
    [entry] = tags["models"]
    assert entry["name"] == "big:latest"
    assert entry["size"] == 2000 * 1024**2
    assert entry["details"]["format"] == "gguf"


@pytest.mark.parametrize("num_predict", [0, -1])
def test_num_predict_zero_or_negative_is_no_limit(
    standin: Callable[..., RunningStandin], num_predict: int
) -> None:
    url = standin().url
    _, free = chat(url, "big")
    status, reply = chat(url, "big", options={"num_predict": num_predict})
    assert (status, reply["done_reason"]) == (200, "stop")
    assert reply["eval_count"] == free["eval_count"] > 0


def test_chat_non_streaming_has_ollama_metrics(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    status, reply = chat(url, "big", options={"num_predict": 3})
    assert status == 200
    assert reply["done"] is True
    assert reply["done_reason"] == "length"
    assert reply["message"]["role"] == "assistant"
    assert reply["eval_count"] == 3
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(reply[key], int), key
    assert reply["load_duration"] > 0  # this request paid for the load


def test_chat_streams_ndjson_by_default(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    body = {"model": "big", "messages": [{"role": "user", "content": "hi"}]}
    status, text = call(url, "/api/chat", body)
    lines = ndjson(text)
    assert status == 200
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-1]["done_reason"] == "stop"
    assert lines[-1]["eval_count"] == len(lines) - 1


def test_generate_stream_false_and_context(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    status, reply = call(url, "/api/generate", {"model": "mid", "prompt": "x", "stream": False})
    assert status == 200
    assert reply["response"]
    assert reply["context"]


def test_unknown_model_is_404_in_ollama_shape(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    assert chat(url, "nope") == (404, {"error": "model 'nope' not found"})
    assert call(url, "/api/show", {"model": "nope"}) == (404, {"error": "model 'nope' not found"})


def test_bad_requests_are_400(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    assert call(url, "/api/chat", {"messages": []})[0] == 400
    status, body = call(url, "/api/chat", {"model": "big", "keep_alive": "soon"})
    assert status == 400
    assert "invalid duration" in body["error"]
    status, body = chat(url, "embedder")
    assert (status, body["error"]) == (400, '"embedder" does not support chat')


def test_keep_alive_connection_survives_an_error_with_a_body(
    standin: Callable[..., RunningStandin],
) -> None:
    host, port = standin().url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/api/nope", body=json.dumps({"model": "big"}))
    first = conn.getresponse()
    assert (first.status, json.loads(first.read())) == (404, {"error": "404 page not found"})
    conn.request("GET", "/api/version")  # same connection: the unread body did not linger
    assert conn.getresponse().status == 200
    conn.close()


def test_show_reports_context_length_and_capabilities(
    standin: Callable[..., RunningStandin],
) -> None:
    url = standin().url
    status, info = call(url, "/api/show", {"model": "big"})
    assert status == 200
    arch = info["model_info"]["general.architecture"]
    assert info["model_info"][f"{arch}.context_length"] == 4096
    assert "completion" in info["capabilities"]


def test_embed_and_legacy_embeddings(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    status, reply = call(url, "/api/embed", {"model": "embedder", "input": ["a", "b"]})
    assert status == 200
    assert [len(v) for v in reply["embeddings"]] == [8, 8]
    assert reply["embeddings"][0] != reply["embeddings"][1]
    status, legacy = call(url, "/api/embeddings", {"model": "embedder", "prompt": "a"})
    assert (status, legacy["embedding"]) == (200, reply["embeddings"][0])


@pytest.mark.parametrize(
    ("path", "body", "answer"),
    [  # Ollama's EmbedHandler / EmbeddingsHandler: no input loads the model, no vectors
        ("/api/embed", {}, {"model": "embedder", "embeddings": []}),
        ("/api/embed", {"input": None}, {"model": "embedder", "embeddings": []}),
        ("/api/embed", {"input": ""}, {"model": "embedder", "embeddings": []}),
        ("/api/embed", {"input": []}, {"model": "embedder", "embeddings": []}),
        ("/api/embeddings", {"prompt": ""}, {"embedding": []}),
        ("/api/embeddings", {}, {"embedding": []}),
    ],
)
def test_embed_with_no_input_loads_the_model(
    standin: Callable[..., RunningStandin], path: str, body: dict[str, Any], answer: Any
) -> None:
    url = standin().url
    assert call(url, path, {"model": "embedder", **body}) == (200, answer)
    assert ps_names(url) == ["embedder:latest"]


@pytest.mark.parametrize("given", [5, {"a": 1}, ["a", 1], [None]])
def test_embed_input_of_another_type_is_400(
    standin: Callable[..., RunningStandin], given: Any
) -> None:
    url = standin().url
    status, reply = call(url, "/api/embed", {"model": "embedder", "input": given})
    assert (status, reply) == (400, {"error": "invalid input type"})
    assert ps_names(url) == []


def test_an_embedding_model_unloads_through_generate_but_does_not_load_there(
    standin: Callable[..., RunningStandin],
) -> None:
    # Ollama's GenerateHandler unloads before it checks what the model can do
    url = standin().url
    call(url, "/api/embed", {"model": "embedder"})
    status, unloaded = call(url, "/api/generate", {"model": "embedder", "keep_alive": 0})
    assert (status, unloaded["done_reason"]) == (200, "unload")
    assert ps_names(url) == []
    status, refused = call(url, "/api/generate", {"model": "embedder"})
    assert (status, refused) == (400, {"error": '"embedder" does not support generate'})


def test_chat_with_tools_returns_object_arguments(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {}}, "required": ["city"]},
        },
    }
    _, reply = chat(url, "big", tools=[tool])
    [call_] = reply["message"]["tool_calls"]
    assert call_["function"] == {"name": "get_weather", "arguments": {"city": "standin"}}


# --------------------------------------------------------------------------- OpenAI compat


def test_openai_chat_sse_and_models(standin: Callable[..., RunningStandin]) -> None:
    url = standin(models=["big"]).url
    body = {"model": "big", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    status, text = call(url, "/v1/chat/completions", body)
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert status == 200
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    status, reply = call(url, "/v1/chat/completions", {**body, "stream": False, "max_tokens": 2})
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 2

    status, models = call(url, "/v1/models")
    assert [m["id"] for m in models["data"]] == ["big:latest"]
    status, err = call(url, "/v1/chat/completions", {**body, "model": "nope"})
    assert status == 404
    assert err["error"]["type"] == "not_found_error"


def test_openai_completions_and_embeddings(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    _, reply = call(url, "/v1/completions", {"model": "big", "prompt": "x", "max_tokens": 2})
    assert reply["object"] == "text_completion"
    assert reply["choices"][0]["text"]
    _, emb = call(url, "/v1/embeddings", {"model": "embedder", "input": "x"})
    assert len(emb["data"][0]["embedding"]) == 8


# --------------------------------------------------------------------------- scheduling


def test_vram_full_evicts_idle_model_with_shortest_keep_alive(
    standin: Callable[..., RunningStandin],
) -> None:
    url = standin(vram_mb=4000).url
    chat(url, "big", keep_alive="10m")
    chat(url, "mid", keep_alive="1m")
    assert ps_names(url) == ["big:latest", "mid:latest"]  # 3500 MB of 4000
    chat(url, "small", keep_alive="10m")  # needs 1500 more: "mid" has the shortest keep_alive
    assert ps_names(url) == ["big:latest", "small:latest"]
    assert stats(url)["unloads"] == 1


def test_eviction_ties_break_by_name(standin: Callable[..., RunningStandin]) -> None:
    url = standin(vram_mb=0, max_loaded_models=2).url  # CPU host: only the count cap applies
    chat(url, "small")
    chat(url, "mid")
    chat(url, "big")
    assert ps_names(url) == ["big:latest", "small:latest"]  # "mid" < "small"


def test_model_larger_than_vram_loads_alone_partly_on_cpu(
    standin: Callable[..., RunningStandin],
) -> None:
    url = standin(vram_mb=4000).url
    chat(url, "big")
    chat(url, "huge")
    [entry] = call(url, "/api/ps")[1]["models"]
    assert entry["name"] == "huge:latest"
    assert entry["size_vram"] == 4000 * 1024**2 < entry["size"]


def test_loaded_size_includes_the_kv_cache(standin: Callable[..., RunningStandin]) -> None:
    catalog = [{"name": "kv", "size_mb": 1000, "kv_mb_per_1k_ctx": 100}]
    url = standin(catalog=catalog, models=["kv"], num_parallel=2, vram_mb=1300).url
    chat(url, "kv", options={"num_ctx": 2048})
    [entry] = call(url, "/api/ps")[1]["models"]
    assert entry["size"] == (1000 + 100 * 2 * 2) * 1024**2  # weights + KV for 2048 ctx x 2 slots
    assert entry["size_vram"] == 1300 * 1024**2  # the rest spills to CPU
    assert call(url, "/api/tags")[1]["models"][0]["size"] == 1000 * 1024**2  # the file


def test_max_loaded_defaults_to_three_per_gpu() -> None:
    assert Settings(gpu_vram_mb=[]).effective_max_loaded == 3
    assert Settings(gpu_vram_mb=[24576, 24576]).effective_max_loaded == 6
    assert Settings(gpu_vram_mb=[24576], max_loaded_models=1).effective_max_loaded == 1


def test_busy_model_is_not_evicted_and_the_load_waits(
    standin: Callable[..., RunningStandin],
) -> None:
    url = standin(vram_mb=0, max_loaded_models=1, tokens_per_s=HOLD_TOKENS_PER_S).url
    holder = OpenStream(url, "big")
    holder.first_line()  # "big" is loaded and busy
    result: list[tuple[int, Any]] = []
    one_token = {"num_predict": 1}
    waiter = threading.Thread(target=lambda: result.append(chat(url, "mid", options=one_token)))
    waiter.start()
    wait_for(lambda: stats(url)["pending"] == 1, "the 'mid' request to queue")
    assert ps_names(url) == ["big:latest"]  # not evicted while serving
    holder.close()
    waiter.join(timeout=30)
    assert result[0][0] == 200
    assert ps_names(url) == ["mid:latest"]


def test_parallel_slots_and_full_queue_answers_503(
    standin: Callable[..., RunningStandin],
) -> None:
    """Two slots serve two requests at once; a third waits for a slot without taking one of
    OLLAMA_MAX_QUEUE's places (only loads queue there, server/sched.go ``GetRunner``): with
    the queue full of loads, a request that needs a load is refused with 503."""
    url = standin(
        num_parallel=2, max_queue=0, max_loaded_models=1, tokens_per_s=HOLD_TOKENS_PER_S
    ).url
    holders = []
    for _ in range(2):
        holders.append(OpenStream(url, "big"))
        holders[-1].first_line()
    assert stats(url)["slots_in_use"] == {"big:latest": 2}
    queued: list[tuple[int, Any]] = []
    waiter = threading.Thread(
        target=lambda: queued.append(chat(url, "big", options={"num_predict": 1}))
    )
    waiter.start()
    wait_for(lambda: stats(url)["pending"] == 1, "the third request to wait for a slot")
    assert stats(url)["queued"] == 0
    loader = threading.Thread(
        target=lambda: queued.append(chat(url, "mid", options={"num_predict": 1}))
    )
    loader.start()  # "mid" needs "big" evicted: the scheduler works on it, the queue is empty
    wait_for(lambda: stats(url)["queued"] == 1, "the 'mid' load to be scheduled")
    status, body = chat(url, "small")  # another load: no place left in a queue of 0
    assert status == 503
    assert body["error"] == ollama.MAX_QUEUE_ERROR
    for holder in holders:
        holder.close()
    waiter.join(timeout=30)
    loader.join(timeout=30)
    assert [q[0] for q in queued] == [200, 200]


def test_a_queued_request_whose_client_left_is_dropped(
    standin: Callable[..., RunningStandin],
) -> None:
    url = standin(tokens_per_s=HOLD_TOKENS_PER_S).url
    holder = OpenStream(url, "big")
    holder.first_line()
    gone = OpenStream(url, "big")  # waits for the only slot, then the client leaves
    wait_for(lambda: stats(url)["pending"] == 1, "the second request to queue")
    gone.close()
    wait_for(lambda: stats(url)["pending"] == 0, "the queue to drop the request")
    assert stats(url)["cancelled"] == 1
    holder.close()


def test_concurrent_requests_share_one_load(standin: Callable[..., RunningStandin]) -> None:
    url = standin(num_parallel=4, load_ms_per_gb=200).url
    threads = [threading.Thread(target=chat, args=(url, "big")) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert stats(url)["load_counts"] == {"big:latest": 1}


def test_changed_num_ctx_reloads_the_model(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    chat(url, "big", options={"num_ctx": 2048})
    chat(url, "big", options={"num_ctx": 2048})
    assert stats(url)["load_counts"] == {"big:latest": 1}
    chat(url, "big", options={"num_ctx": 8192})
    assert stats(url)["load_counts"] == {"big:latest": 2}
    assert call(url, "/api/ps")[1]["models"][0]["context_length"] == 8192
    chat(url, "big")  # no num_ctx: the default 4096 differs again
    assert call(url, "/api/ps")[1]["models"][0]["context_length"] == 4096


# --------------------------------------------------------------------------- keep_alive


def test_keep_alive_zero_unloads_after_the_request(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    status, reply = chat(url, "big", keep_alive=0)
    assert (status, reply["done_reason"]) == (200, "stop")
    assert ps_names(url) == []


def test_empty_messages_load_and_keep_alive_zero_unloads(
    standin: Callable[..., RunningStandin],
) -> None:
    url = standin().url
    _, loaded = call(url, "/api/chat", {"model": "big", "messages": []})
    assert loaded["done_reason"] == "load"
    assert ps_names(url) == ["big:latest"]
    _, unloaded = call(url, "/api/generate", {"model": "big", "keep_alive": 0})
    assert unloaded["done_reason"] == "unload"
    assert ps_names(url) == []


def test_keep_alive_negative_means_forever(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    chat(url, "big", keep_alive=-1)
    expires = call(url, "/api/ps")[1]["models"][0]["expires_at"]
    assert datetime.fromisoformat(expires).year > datetime.now().year + 200


def test_keep_alive_expiry_unloads_idle_model(standin: Callable[..., RunningStandin]) -> None:
    url = standin(keep_alive="50ms").url
    chat(url, "big")
    wait_for(lambda: ps_names(url) == [], "keep_alive to expire")
    assert stats(url)["unloads"] == 1


def test_ps_sorts_longest_expiry_first(standin: Callable[..., RunningStandin]) -> None:
    url = standin().url
    chat(url, "mid", keep_alive="1m")
    chat(url, "big", keep_alive="1h")
    assert [m["name"] for m in call(url, "/api/ps")[1]["models"]] == ["big:latest", "mid:latest"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), (0, 0.0), ("0", 0.0), (90, 90.0)],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [-1, -0.5, "-5m"])
def test_parse_duration_negative_is_forever(value: Any) -> None:
    assert parse_duration(value) == ollama.FOREVER_S


# --------------------------------------------------------------------------- pull / delete


def test_pull_streams_progress_and_persists(
    standin: Callable[..., RunningStandin], tmp_path: Path
) -> None:
    url = standin(models=[], models_dir=tmp_path).url
    status, text = call(url, "/api/pull", {"model": "mid"})
    events = ndjson(text)
    assert status == 200
    assert events[0] == {"status": "pulling manifest"}
    progress = [e["completed"] for e in events if "completed" in e]
    assert progress == sorted(progress)
    assert progress[-1] == events[1]["total"] == 1500 * 1024**2
    assert [e["status"] for e in events[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    # A new server on the same OLLAMA_MODELS still has it.
    again = standin(models=[], models_dir=tmp_path).url
    assert [m["name"] for m in call(again, "/api/tags")[1]["models"]] == ["mid:latest"]


def test_pull_unknown_model_reports_error_line(standin: Callable[..., RunningStandin]) -> None:
    url = standin(models=[]).url
    status, text = call(url, "/api/pull", {"model": "nope"})
    assert status == 200
    assert "error" in ndjson(text)[-1]
    status, body = call(url, "/api/pull", {"model": "nope", "stream": False})
    assert status == 500
    assert "file does not exist" in body["error"]


def test_pull_stream_false_and_delete(standin: Callable[..., RunningStandin]) -> None:
    url = standin(models=[]).url
    assert call(url, "/api/pull", {"model": "big", "stream": False}) == (
        200,
        {"status": "success"},
    )
    chat(url, "big")
    assert call(url, "/api/delete", {"model": "big"}, method="DELETE")[0] == 200
    assert ps_names(url) == []
    assert call(url, "/api/tags")[1] == {"models": []}
    assert call(url, "/api/delete", {"model": "big"}, method="DELETE")[0] == 404


# --------------------------------------------------------------------------- env and CLI


def test_settings_from_env_reads_ollama_variables(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "OLLAMA_HOST": "0.0.0.0:21434",
            "OLLAMA_MODELS": str(tmp_path),
            "OLLAMA_KEEP_ALIVE": "-1",
            "OLLAMA_MAX_LOADED_MODELS": "2",
            "OLLAMA_NUM_PARALLEL": "4",
            "OLLAMA_MAX_QUEUE": "8",
            "OLLAMA_CONTEXT_LENGTH": "8192",
            "STANDIN_VRAM_MB": "24576,24576,81920",
            "CUDA_VISIBLE_DEVICES": "0,2",
        }
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 21434)
    assert settings.models_dir == tmp_path
    assert settings.keep_alive_s == ollama.FOREVER_S
    assert (settings.max_loaded_models, settings.num_parallel, settings.max_queue) == (2, 4, 8)
    assert settings.context_length == 8192
    assert settings.gpu_vram_mb == [24576, 81920]


def test_settings_find_the_gpus_nvidia_smi_lists(tmp_path: Path) -> None:
    """Without STANDIN_VRAM_MB the stand-in asks ``nvidia-smi``, as Ollama asks the driver, and
    ``CUDA_VISIBLE_DEVICES`` picks by index or UUID (the deploy writes UUIDs)."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf 'GPU-aaaa-01, 24564\\nGPU-aaaa-02, 16376\\n'\n")
    smi.chmod(0o755)
    path = {"PATH": str(tmp_path)}
    assert Settings.from_env(path).gpu_vram_mb == [24564, 16376]
    by_uuid = Settings.from_env(path | {"CUDA_VISIBLE_DEVICES": "GPU-aaaa-02,GPU-aaaa-01"})
    assert by_uuid.gpu_vram_mb == [16376, 24564]
    assert Settings.from_env(path | {"CUDA_VISIBLE_DEVICES": "1"}).gpu_vram_mb == [16376]
    # an ambiguous UUID prefix or -1 ends the list, as in CUDA
    assert Settings.from_env(path | {"CUDA_VISIBLE_DEVICES": "GPU-aaaa"}).gpu_vram_mb == []
    assert Settings.from_env(path | {"CUDA_VISIBLE_DEVICES": "0,-1,1"}).gpu_vram_mb == [24564]
    # STANDIN_VRAM_MB wins; without either there is no GPU
    assert Settings.from_env(path | {"STANDIN_VRAM_MB": "8192"}).gpu_vram_mb == [8192]
    assert Settings.from_env({"PATH": str(tmp_path / "none")}).gpu_vram_mb == []


def test_settings_hidden_gpus_and_bad_values() -> None:
    hidden = Settings.from_env({"STANDIN_VRAM_MB": "24576", "CUDA_VISIBLE_DEVICES": "-1"})
    assert hidden.gpu_vram_mb == []
    with pytest.raises(ValueError, match="OLLAMA_NUM_PARALLEL"):
        Settings.from_env({"OLLAMA_NUM_PARALLEL": "many"})
    # Ollama starts with the 5m default on a keep-alive it cannot read (envconfig.KeepAlive)
    assert Settings.from_env({"OLLAMA_KEEP_ALIVE": "a while"}).keep_alive_s == 300.0


def test_catalog_errors_name_the_source() -> None:
    with pytest.raises(ValueError, match=r"STANDIN_CATALOG: catalog entry 'x' needs"):
        ollama.Catalog.load('[{"name": "x"}]')


def test_cli_pull_list_rm_talk_to_the_server(standin: Callable[..., RunningStandin]) -> None:
    url = standin(models=[]).url
    env = {"OLLAMA_HOST": url.removeprefix("http://"), "PATH": "/usr/bin:/bin"}
    script = [sys.executable, ollama.__file__]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*script, *args], env=env, capture_output=True, text=True)

    pulled = cli("pull", "small")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.splitlines()[-1] == "success"
    assert "small:latest" in cli("list").stdout
    assert cli("--version").stdout.strip() == f"ollama version is {ollama.VERSION}"
    assert cli("rm", "small").stdout.strip() == "deleted 'small'"
    missing = cli("rm", "small")
    assert missing.returncode == 1
    assert "not found" in missing.stderr
