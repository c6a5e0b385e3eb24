"""The llama-swap stand-in behaves like llama-swap (shared/reference/backends.md, section b)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.deploy.lab.standins import llama_swap
from modelfleet.deploy.lab.standins.llama_swap import (
    ConfigError,
    RunningStandin,
    load_yaml,
    parse_config,
)
from tests.unit.standin_client import HOLD_TOKENS_PER_S, call, stats, wait_for

# --------------------------------------------------------------------------- helpers


def chat(url: str, model: str, **extra: Any) -> tuple[int, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return call(url, "/v1/chat/completions", body)


def running(url: str) -> dict[str, str]:
    return {r["model"]: r["state"] for r in call(url, "/running")[1]["running"]}


class OpenStream:
    """A streaming chat request left open: it holds its model in flight."""

    def __init__(self, url: str, model: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        body = {"model": model, "messages": [{"role": "user", "content": "hold"}], "stream": True}
        self.conn.request("POST", "/v1/chat/completions", json.dumps(body))

    def first_event(self) -> bytes:
        """Wait for the response (the request is in flight from here on) and its first event."""
        resp = self.conn.getresponse()
        assert resp.status == 200, resp.read()
        return resp.readline()

    def close(self) -> None:
        self.conn.close()


def models_yaml(*names: str, extra: str = "") -> str:
    """Simulated models: each "loads" 100 MB."""
    lines = ["models:"]
    for name in names:
        lines += [f"  {name}:", f"    cmd: llama-server --port ${{PORT}} -m /m/{name}.gguf"]
        lines += ["    metadata:", "      size_mb: 100"]
    return "\n".join(lines) + "\n" + textwrap.dedent(extra)


# --------------------------------------------------------------------------- YAML subset

YAML_DOCS = [
    "a: 1\nb: two\nc: true\nd: null\ne: 1.5\nf: ~\n",
    "list:\n  - a\n  - 'b c'\n  - \"d\\te\"\nsame_column:\n- x\n- y\n",
    "items:\n  - name: one\n    size: 1\n  - name: two\n    tags: [a, b]\n",
    "flow: {a: 1, b: [x, 'y, z'], c: \"q\"}\nempty_list: []\nempty_map: {}\n",
    "cmd: |\n  line one\n  # kept in a literal\n  line three\nnext: 1\n",
    "folded: >-\n  a\n  b\n\n  c\nstrip: |-\n  x\nkeep: |+\n  y\n\nz: 0\n",
    "# comment\nkey: value # trailing\nurl: http://h:1/x#frag\n'quoted key': 2\n",
    'model:\n  "qwen2.5:7b":\n    ttl: 0\n  plain:colon: 1\n',
    "plain: words that\n  continue here\nafter: 1\n",
    "nested:\n  deeper:\n    - - inner\n      - list\n    -\n      k: v\n",
]


@pytest.mark.parametrize("text", YAML_DOCS)
def test_yaml_subset_matches_pyyaml(text: str) -> None:
    assert load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a:\n\tb: 1\n", "config.yaml:2: tabs"),
        ("base: &b {x: 1}\n", "anchors"),
        ("a: 1\n  b: 2\n", "config.yaml:2"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("a: 'open\n", "unterminated"),
        ("just a scalar line\nkey: 1\n", "expected 'key: value'"),
    ],
)
def test_yaml_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_yaml(text, "config.yaml")


# --------------------------------------------------------------------------- config


def test_config_ports_macros_env_and_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_DIR", "/srv/models")
    config = parse_config(
        load_yaml(
            textwrap.dedent("""
            startPort: 9000
            globalTTL: 300
            macros:
              server: llama-server --host 127.0.0.1
              full: ${server} -ngl 99
            models:
              b:
                cmd: |
                  ${full} --port ${PORT}
                  # a comment line
                  -m ${env.MODEL_DIR}/b.gguf
                env: ["CUDA_VISIBLE_DEVICES=1"]
              a:
                cmd: ${server} --port ${PORT} -m /m/${MODEL_ID}.gguf
                ttl: 0
                aliases: [alpha]
                macros:
                  server: other-server
              fixed:
                cmd: llama-server --port 7000
                proxy: http://127.0.0.1:7000
            """)
        )
    )
    a, b = config.models["a"], config.models["b"]
    assert a.cmd == ["other-server", "--port", "9000", "-m", "/m/a.gguf"]  # sorted ids get ports
    assert a.proxy == "http://localhost:9000"
    assert b.cmd[-3:] == ["9001", "-m", "/srv/models/b.gguf"]
    assert b.cmd[:4] == ["llama-server", "--host", "127.0.0.1", "-ngl"]
    assert (a.ttl, b.ttl) == (0, 300)  # ttl -1 (unset) inherits globalTTL
    assert b.env == {"CUDA_VISIBLE_DEVICES": "1"}
    assert config.models["fixed"].proxy == "http://127.0.0.1:7000"
    assert config.resolve("alpha") == "a"
    assert config.models["a"].concurrency_limit == 10
    assert config.group_of("a").name == "(default)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("logLevel: info\n", "'models' is required"),
        ("models:\n  a:\n    ttl: 5\n", "models.a.cmd is required"),
        ("models:\n  a:\n    cmd: x ${nope}\n", r"models.a.cmd: unknown macro '\$\{nope\}'"),
        ("models:\n  a:\n    cmd: x\n", r"models.a.proxy: proxy uses \$\{PORT\} but cmd does not"),
        ("models:\n  a:\n    cmd: x ${PORT}\n    ttl: soon\n", "models.a.ttl: expected int"),
        ("models:\n  a:\n    cmd: x ${PORT}\n    env: [NOEQUALS]\n", r"models.a.env\[0\]"),
        (
            "models:\n  a:\n    cmd: x ${PORT}\n    aliases: [z]\n"
            "  b:\n    cmd: y ${PORT}\n    aliases: [z]\n",
            "duplicate alias 'z' in models.a and models.b",
        ),
        (
            "models:\n  a:\n    cmd: x ${PORT}\ngroups:\n  g:\n    members: [b]\n",
            "unknown model 'b'",
        ),
        (
            "models:\n  a:\n    cmd: x ${PORT}\n"
            "groups:\n  g:\n    members: [a]\n  h:\n    members: [a]\n",
            "model 'a' is in groups 'g' and 'h'",
        ),
        ("macros:\n  PORT: 1\nmodels:\n  a:\n    cmd: x ${PORT}\n", "reserved"),
        ("models:\n  a:\n    cmd: x ${PORT}\nhooks:\n  on_startup:\n    preload: [b]\n", "preload"),
    ],
)
def test_config_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(load_yaml(text), "config.yaml")


def test_config_health_timeout_minimum_routing_form_and_unknown_keys() -> None:
    config = parse_config(
        load_yaml(
            textwrap.dedent("""
            healthCheckTimeout: 5
            colour: blue
            models:
              a: {cmd: "x ${PORT}"}
              b: {cmd: "y ${PORT}"}
            routing:
              router:
                use: group
                settings:
                  groups:
                    pair: {swap: false, members: [a, b]}
            """)
        )
    )
    assert config.health_check_timeout == 15
    assert config.groups["pair"].swap is False
    assert config.warnings == ["config.yaml: unknown key 'colour' ignored"]


def test_load_config_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        llama_swap.load_config(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- swap semantics


def test_default_group_swaps_one_model_at_a_time(swap: Callable[..., RunningStandin]) -> None:
    url = swap(models_yaml("a", "b")).url
    assert chat(url, "a")[0] == 200
    assert running(url) == {"a": "ready"}
    assert chat(url, "b")[0] == 200
    assert running(url) == {"b": "ready"}


def test_swap_false_group_keeps_members_together(swap: Callable[..., RunningStandin]) -> None:
    extra = "groups:\n  pair:\n    swap: false\n    members: [a, b]\n"
    url = swap(models_yaml("a", "b", extra=extra)).url
    chat(url, "a")
    chat(url, "b")
    assert running(url) == {"a": "ready", "b": "ready"}


def test_exclusive_group_evicts_others_but_not_persistent(
    swap: Callable[..., RunningStandin],
) -> None:
    extra = """
    groups:
      keep:
        persistent: true
        exclusive: false
        members: [p]
      side:
        exclusive: false
        members: [s]
      main:
        exclusive: true
        members: [m]
    """
    url = swap(models_yaml("p", "s", "m", extra=extra)).url
    chat(url, "p")
    chat(url, "s")
    assert running(url) == {"p": "ready", "s": "ready"}  # non-exclusive groups coexist
    chat(url, "m")
    assert running(url) == {"m": "ready", "p": "ready"}  # exclusive: "s" out, persistent stays


def test_a_model_with_requests_in_flight_is_not_swapped_out(
    swap: Callable[..., RunningStandin],
) -> None:
    url = swap(models_yaml("a", "b"), tokens_per_s=HOLD_TOKENS_PER_S).url
    holder = OpenStream(url, "a")
    holder.first_event()
    result: list[tuple[int, Any]] = []
    waiter = threading.Thread(target=lambda: result.append(chat(url, "b", max_tokens=1)))
    waiter.start()
    wait_for(lambda: stats(url)["models"]["b"]["admitted"] == 1, "the 'b' request to queue")
    assert running(url) == {"a": "ready"}  # queued until "a" drains
    holder.close()
    waiter.join(timeout=30)
    assert result[0][0] == 200
    assert running(url) == {"b": "ready"}


def test_a_queued_request_whose_client_left_is_dropped(
    swap: Callable[..., RunningStandin],
) -> None:
    url = swap(models_yaml("a", "b"), tokens_per_s=HOLD_TOKENS_PER_S).url
    holder = OpenStream(url, "a")
    holder.first_event()
    gone = OpenStream(url, "b")  # queued behind "a", then the client leaves
    wait_for(lambda: stats(url)["models"]["b"]["admitted"] == 1, "the 'b' request to queue")
    gone.close()
    wait_for(lambda: stats(url)["cancelled"] == 1, "the queue to drop the request")
    assert stats(url)["models"]["b"]["admitted"] == 0
    holder.close()
    assert chat(url, "a", max_tokens=1)[0] == 200
    assert stats(url)["starts"] == {"a": 1}  # "b" was never loaded for nobody


def test_concurrent_requests_join_one_swap(swap: Callable[..., RunningStandin]) -> None:
    url = swap(models_yaml("a"), load_ms_per_gb=2000).url
    threads = [threading.Thread(target=chat, args=(url, "a")) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert stats(url)["starts"] == {"a": 1}


def test_concurrency_limit_answers_429(swap: Callable[..., RunningStandin]) -> None:
    config = models_yaml("a").replace("    metadata:", "    concurrencyLimit: 1\n    metadata:")
    url = swap(config, tokens_per_s=HOLD_TOKENS_PER_S).url
    holder = OpenStream(url, "a")
    holder.first_event()
    status, body = chat(url, "a")
    holder.close()
    assert status == 429
    assert body["error"]["code"] == 429


def test_ttl_unloads_idle_model(swap: Callable[..., RunningStandin]) -> None:
    url = swap(models_yaml("a").replace("    metadata:", "    ttl: 1\n    metadata:")).url
    chat(url, "a")
    assert running(url) == {"a": "ready"}
    wait_for(lambda: running(url) == {}, "ttl to unload 'a'")
    assert stats(url)["unloads"] == 1


def test_preload_hook_loads_at_startup(swap: Callable[..., RunningStandin]) -> None:
    url = swap(models_yaml("a", extra="hooks:\n  on_startup:\n    preload: [a]\n")).url
    wait_for(lambda: running(url) == {"a": "ready"}, "preload of 'a'")
    assert stats(url)["starts"] == {"a": 1}


# --------------------------------------------------------------------------- endpoints


def test_models_list_status_unlisted_and_aliases(swap: Callable[..., RunningStandin]) -> None:
    config = models_yaml("a", "b", "hidden", extra="includeAliasesInList: true\n")
    config = config.replace(
        "  a:\n    cmd:", "  a:\n    aliases: [alpha]\n    name: Model A\n    cmd:"
    )
    config = config.replace("  hidden:\n", "  hidden:\n    unlisted: true\n")
    url = swap(config).url
    chat(url, "alpha")
    status, listing = call(url, "/v1/models")
    rows = {m["id"]: m for m in listing["data"]}
    assert status == 200
    assert set(rows) == {"a", "alpha", "b"}
    assert rows["a"]["status"] == {"value": "loaded"}
    assert rows["b"]["status"] == {"value": "unloaded"}
    assert rows["a"]["owned_by"] == "llama-swap"
    assert rows["a"]["name"] == "Model A"
    assert rows["a"]["meta"]["llamaswap"]["size_mb"] == 100


def test_running_unload_and_api_unload(swap: Callable[..., RunningStandin]) -> None:
    extra = "groups:\n  all:\n    swap: false\n    members: [a, b]\n"
    url = swap(models_yaml("a", "b", extra=extra)).url
    chat(url, "a")
    chat(url, "b")
    [entry] = [r for r in call(url, "/running")[1]["running"] if r["model"] == "a"]
    assert entry["cmd"].startswith("llama-server --port 5800")
    assert call(url, "/api/models/unload/a", {}) == (200, "OK")
    assert running(url) == {"b": "ready"}
    assert call(url, "/api/models/unload/nope", {})[0] == 404
    assert call(url, "/unload") == (200, "OK")
    assert running(url) == {}


def test_health_version_and_errors(swap: Callable[..., RunningStandin]) -> None:
    url = swap(models_yaml("a")).url
    assert call(url, "/health") == (200, "OK")
    assert call(url, "/api/version")[1]["version"] == llama_swap.VERSION
    status, body = chat(url, "nope")
    assert status == 404
    assert "nope" in body["error"]["message"]
    assert call(url, "/v1/chat/completions", {"messages": []})[0] == 400


def test_keep_alive_connection_survives_an_error_with_a_body(
    swap: Callable[..., RunningStandin],
) -> None:
    host, port = swap(models_yaml("a")).url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/v1/nope", body=json.dumps({"model": "a"}))
    first = conn.getresponse()
    first.read()
    assert first.status == 404
    conn.request("GET", "/health")  # same connection: the unread body did not linger
    assert conn.getresponse().read() == b"OK"
    conn.close()


def test_completions_embeddings_and_streaming(swap: Callable[..., RunningStandin]) -> None:
    url = swap(models_yaml("a")).url
    status, reply = call(url, "/v1/completions", {"model": "a", "prompt": "x", "max_tokens": 2})
    assert (status, reply["choices"][0]["finish_reason"]) == (200, "length")
    assert reply["usage"]["completion_tokens"] == 2
    _, emb = call(url, "/v1/embeddings", {"model": "a", "input": ["x", "y"]})
    assert len(emb["data"]) == 2
    status, text = chat(url, "a", stream=True)
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [  # what llama-server answered, measured on the cached build with --embeddings
        ({}, 400, '"input" or "content" must be provided'),
        ({"input": None}, 500, '"prompt" elements must be a string, a list of tokens'),
        ({"input": 5}, 500, '"prompt" elements must be a string, a list of tokens'),
    ],
)
def test_embeddings_without_input_as_llama_server_answers_them(
    swap: Callable[..., RunningStandin], body: dict[str, Any], status: int, message: str
) -> None:
    url = swap(models_yaml("a")).url
    got, reply = call(url, "/v1/embeddings", {"model": "a", **body})
    assert got == status
    assert reply["error"]["message"].startswith(message)


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs of a server-sent event stream."""
    pairs = []
    for block in filter(None, text.split("\n\n")):
        event, data = block.split("\n")
        pairs.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return pairs


def test_responses_and_messages_as_llama_server_answers_them(
    swap: Callable[..., RunningStandin],
) -> None:
    """Real llama-swap passes both on to llama-server (backends.md table row 2-3); the
    simulated upstream answers them in llama-server's shapes and event order (as captured
    from the demo's real llama-server)."""
    url = swap(models_yaml("a")).url
    status, whole = call(
        url, "/v1/responses", {"model": "a", "input": "hi", "max_output_tokens": 2}
    )
    assert status == 200 and whole["object"] == "response" and whole["status"] == "completed"
    assert whole["output"][0]["content"][0]["type"] == "output_text"
    assert whole["usage"]["output_tokens"] == 2 and whole["id"].startswith("resp_")
    body = {"model": "a", "input": [{"role": "user", "content": "hi"}], "stream": True}
    status, text = call(url, "/v1/responses", body)
    events = sse_events(text)
    assert [name for name, _ in events if not name.endswith(".delta")] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    deltas = "".join(data["delta"] for name, data in events if name.endswith(".delta"))
    completed = events[-1][1]["response"]
    assert completed["output"][0]["content"][0]["text"] == deltas != ""

    anthropic = {"model": "a", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    status, message = call(url, "/v1/messages", anthropic)
    assert (status, message["type"], message["stop_reason"]) == (200, "message", "max_tokens")
    assert message["usage"]["output_tokens"] == 2 and message["content"][0]["type"] == "text"
    status, text = call(url, "/v1/messages", {**anthropic, "max_tokens": 100, "stream": True})
    events = sse_events(text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    status, counted = call(url, "/v1/messages/count_tokens", {**anthropic, "system": "be brief"})
    assert (status, counted) == (200, {"input_tokens": 3})


def test_upstream_passthrough_loads_the_model(swap: Callable[..., RunningStandin]) -> None:
    url = swap(models_yaml("a")).url
    assert call(url, "/upstream/a/health") == (200, {"status": "ok"})
    assert running(url) == {"a": "ready"}


def test_api_keys_are_required_except_on_health(swap: Callable[..., RunningStandin]) -> None:
    url = swap(models_yaml("a", extra="apiKeys: [sekret]\n")).url
    assert call(url, "/v1/models")[0] == 401
    assert call(url, "/v1/models", headers={"Authorization": "Bearer sekret"})[0] == 200
    assert call(url, "/v1/models", headers={"x-api-key": "sekret"})[0] == 200
    assert call(url, "/health") == (200, "OK")


def test_watch_config_reload_stops_every_model(
    swap: Callable[..., RunningStandin], tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(models_yaml("a"))
    url = swap(path, watch=True).url
    chat(url, "a")
    assert running(url) == {"a": "ready"}
    path.write_text(models_yaml("a", "b"))
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime even on coarse clocks
    wait_for(lambda: {m["id"] for m in call(url, "/v1/models")[1]["data"]} == {"a", "b"}, "reload")
    assert running(url) == {}  # like llama-swap: a reload unloads everything


def test_bad_config_on_reload_keeps_the_old_one(
    swap: Callable[..., RunningStandin], tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(models_yaml("a"))
    server = swap(path, watch=True)
    path.write_text("models: [oops\n")
    server.app.reload()
    assert [m["id"] for m in call(server.url, "/v1/models")[1]["data"]] == ["a"]


# --------------------------------------------------------------------------- exec mode

FAKE_SERVER = """
import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._send({"status": "ok"} if self.path == "/health" else {"path": self.path})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send({"echo": body["model"], "path": self.path})
    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def exec_config(tmp_path: Path, *, crash: bool = False) -> str:
    script = tmp_path / "fake_server.py"
    script.write_text("import sys; sys.exit(3)\n" if crash else FAKE_SERVER)
    port = llama_swap_free_port()
    return textwrap.dedent(f"""
        startPort: {port}
        models:
          real:
            cmd: {sys.executable} {script} --port ${{PORT}}
            proxy: http://127.0.0.1:${{PORT}}
            useModelName: upstream-name
    """)


def llama_swap_free_port() -> int:
    from modelfleet.deploy.lab.llama import free_port

    return free_port()


def test_exec_mode_runs_cmd_waits_for_health_and_proxies(
    swap: Callable[..., RunningStandin], tmp_path: Path
) -> None:
    server = swap(exec_config(tmp_path), mode="exec")
    status, reply = chat(server.url, "real")
    assert (status, reply) == (200, {"echo": "upstream-name", "path": "/v1/chat/completions"})
    assert call(server.url, "/upstream/real/props?x=1") == (200, {"path": "/props?x=1"})
    upstream = server.app.scheduler.models["real"].upstream
    assert isinstance(upstream, llama_swap.CommandUpstream)
    process = upstream.process
    assert process is not None
    call(server.url, "/unload")
    assert process.poll() is not None  # SIGTERM to its process group on unload


def test_exec_mode_reports_a_crashed_upstream(
    swap: Callable[..., RunningStandin], tmp_path: Path
) -> None:
    url = swap(exec_config(tmp_path, crash=True), mode="exec").url
    status, body = chat(url, "real")
    assert status == 502
    assert "exited prematurely with code 3" in body["error"]["message"]
    assert running(url) == {}


# --------------------------------------------------------------------------- CLI


def test_cli_version_and_config_error(tmp_path: Path) -> None:
    script = [sys.executable, llama_swap.__file__]
    version = subprocess.run([*script, "-version"], capture_output=True, text=True)
    assert version.stdout.startswith(f"version: {llama_swap.VERSION}")
    bad = tmp_path / "config.yaml"
    bad.write_text("models:\n  a:\n    ttl: 1\n")
    failed = subprocess.run(
        [*script, "-config", str(bad), "-listen", "127.0.0.1:0"], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert f"{bad}: models.a.cmd is required" in failed.stderr


def test_cli_serves_like_llama_swap(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(models_yaml("a"))
    port = llama_swap_free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            llama_swap.__file__,
            "-config",
            str(config),
            "-listen",
            f"127.0.0.1:{port}",
        ],
        env={**os.environ, "STANDIN_LOAD_MS_PER_GB": "10", "STANDIN_TOKENS_PER_S": "0"},
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return call(url, "/health") == (200, "OK")
            except OSError:
                return False

        wait_for(healthy, "the CLI server to listen")
        assert chat(url, "a")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
