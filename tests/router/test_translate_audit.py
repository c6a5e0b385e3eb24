"""Translation defects found in an audit: each test failed on the code before its fix.

- a ``stop`` string (OpenAI allows one string or a list) sent to llama-server's native
  ``/infill``, which reads ``stop`` only as an array and silently ignores a string;
- the reasoning text that Ollama's ``/v1`` (and newer vLLM) stream as ``delta.reasoning``
  (llama-server's name is ``reasoning_content``), lost when the router put a whole answer
  together from the stream, or translated it for an Ollama client;
- tool-call ids: dropped from the Ollama answer, and never given to the ``tool`` messages
  that answer them, so an OpenAI backend got a tool result tied to no call.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from modelfleet.router.translate import (
    OllamaReply,
    StreamAssembler,
    Timing,
    chat_request,
    openai_infill_request,
)
from tests.router.conftest import ndjson, openai_upstream, sse_chat

# -- stop as a string to /infill --------------------------------------------------------------


def test_openai_infill_stop_string_becomes_a_list():
    body = {"model": "coder", "prompt": "def f(", "suffix": ")", "stop": "\n", "max_tokens": 8}
    out = openai_infill_request(body, "up")
    assert out["stop"] == ["\n"]  # /infill ignores a string: the completion would run on
    assert out["n_predict"] == 8
    listed = openai_infill_request({**body, "stop": ["\n", "```"]}, "up")
    assert listed["stop"] == ["\n", "```"]


# -- reasoning sent as ``reasoning`` -------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c", "model": "m", "choices": [choice]}


def test_assembler_keeps_reasoning_field_of_ollama_v1():
    asm = StreamAssembler("openai")
    asm.feed(_chunk({"role": "assistant", "content": "", "reasoning": "Let me "}))
    asm.feed(_chunk({"content": "", "reasoning": "think."}))
    asm.feed(_chunk({"content": "42"}, "stop"))
    whole = asm.result()
    assert whole is not None
    message = whole["choices"][0]["message"]
    assert message["content"] == "42"
    assert message["reasoning"] == "Let me think."  # the backend's own field name
    assert "reasoning_content" not in message


def test_assembler_still_writes_reasoning_content_for_llama_server():
    asm = StreamAssembler("openai")
    asm.feed(_chunk({"reasoning_content": "hm", "reasoning": "hm"}))  # both: taken once
    asm.feed(_chunk({"content": "ok"}, "stop"))
    whole = asm.result()
    assert whole is not None
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] == "hm" and "reasoning" not in message


def test_ollama_reply_takes_reasoning_as_thinking():
    reply = OllamaReply(model="m", chat=True, timing=Timing(start=0.0))
    reply.chunk(_chunk({"reasoning": "hmm"}))
    reply.chunk(_chunk({"content": "yes"}, "stop"))
    lines = reply.lines()
    assert [line["message"].get("thinking") for line in lines] == ["hmm", None]
    whole = OllamaReply(model="m", chat=True, timing=Timing(start=0.0))
    whole.whole({"choices": [{"message": {"content": "yes", "reasoning": "hmm"}}]})
    final = whole.final(streamed=False)
    assert final["message"] == {"role": "assistant", "content": "yes", "thinking": "hmm"}


async def test_openai_client_non_streaming_keeps_reasoning(aiohttp_server, make_router):
    """A whole answer from a backend that streams ``reasoning``: the client gets it."""

    chat = sse_chat(
        [
            _chunk({"role": "assistant", "content": "", "reasoning": "2+2 is 4"}),
            _chunk({"content": "4"}, "stop"),
            {"id": "c", "model": "m", "choices": [], "usage": {"prompt_tokens": 5,
             "completion_tokens": 6, "total_tokens": 11}},
        ]
    )  # fmt: skip

    url = await openai_upstream(aiohttp_server, chat, "m")
    client = await make_router([{"name": "o", "url": url, "kind": "openai"}])
    messages = [{"role": "user", "content": "2+2?"}]
    resp = await client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
    assert resp.status == 200
    answer = await resp.json()
    message = answer["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "4", "reasoning": "2+2 is 4"}
    assert answer["usage"]["completion_tokens"] == 6


# -- tool-call ids ------------------------------------------------------------------------------


def test_tool_messages_get_the_id_of_the_call_they_answer():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather in Tokyo and Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
                    {"function": {"name": "get_time", "arguments": {"city": "Paris"}}},
                ],
            },
            {"role": "tool", "content": "10:00", "tool_name": "get_time"},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
    }
    out = chat_request(body, "up")
    calls = out["messages"][1]["tool_calls"]
    ids = {call["function"]["name"]: call["id"] for call in calls}
    assert len(set(ids.values())) == 2
    assert out["messages"][2]["tool_call_id"] == ids["get_time"]
    assert out["messages"][2]["name"] == "get_time"
    assert out["messages"][3]["tool_call_id"] == ids["get_weather"]


def test_tool_messages_without_names_answer_the_calls_in_order():
    body = {
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "a1", "function": {"name": "f", "arguments": {}}},
                    {"id": "a2", "function": {"name": "f", "arguments": {"x": 1}}},
                ],
            },
            {"role": "tool", "content": "one"},
            {"role": "tool", "content": "two", "tool_name": "f"},
            {"role": "user", "content": "and now?"},
            {"role": "tool", "content": "late", "tool_call_id": "given"},
        ],
    }
    out = chat_request(body, "up")
    assert [m.get("tool_call_id") for m in out["messages"]] == [None, "a1", "a2", None, "given"]


async def test_ollama_client_gets_the_backends_tool_call_id(aiohttp_server, make_router):
    """Ollama's tool calls carry an ``id``; the backend's is kept."""

    first = {"index": 0, "id": "call_xyz", "type": "function"}
    first["function"] = {"name": "get_weather", "arguments": '{"city": '}
    stream = sse_chat(
        [
            _chunk({"tool_calls": [first]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Tokyo"}'}}]}),
            _chunk({}, "tool_calls"),
        ]
    )

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):  # never asked: the router streams upstream
            raise AssertionError("expected a stream")
        return await stream(request)

    url = await openai_upstream(aiohttp_server, chat, "m")
    client = await make_router([{"name": "o", "url": url, "kind": "openai"}])
    request = {"model": "m", "messages": [{"role": "user", "content": "?"}]}
    expected = [
        {
            "id": "call_xyz",
            "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}},
        }
    ]
    lines = await ndjson(await client.post("/api/chat", json=request))
    calls = [line["message"]["tool_calls"] for line in lines if line["message"].get("tool_calls")]
    assert calls == [expected]
    whole = await (await client.post("/api/chat", json={**request, "stream": False})).json()
    assert whole["message"]["tool_calls"] == expected and whole["done_reason"] == "stop"
