"""Non-streaming answers are streamed from the backend and put together in the router.

So ``first_byte_timeout_s`` bounds every request to a resident model, streaming or not
(issue 10, item 0), and the assembled answer is the one the backend would have sent whole.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from modelfleet.router.translate import StreamAssembler
from tests.router.conftest import openai_upstream, router_of, wait_for


def chat(stream: bool = False) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": stream}


async def test_hung_backend_non_streaming_request_is_retried_within_the_first_byte_bound(
    faulty_backend, make_router
):
    hung, good = await faulty_backend("hang"), await faulty_backend("ok")
    client = await make_router(
        [
            {"name": "a-hung", "url": hung.url, "kind": "openai"},
            {"name": "b-good", "url": good.url, "kind": "openai"},
        ],
        first_byte_timeout_s=0.2,  # load_timeout_s stays 300: a wait that long fails the test
        health={"interval_s": 30, "fail_threshold": 100},
    )
    router = router_of(client)
    good_state = router.fleet.backends["b-good"]
    for n, path in enumerate(("/v1/chat/completions", "/api/chat"), start=1):
        good_state.drained = True  # so the first try goes to the hung backend
        pending = asyncio.ensure_future(client.post(path, json=chat(stream=False)))

        def hung_saw(n: int = n) -> bool:
            return hung.requests == n

        await wait_for(hung_saw)
        good_state.drained = False  # ... and the retry to the good one
        resp = await pending
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Modelfleet-Backend"] == "b-good"
        assert resp.headers["X-Modelfleet-Attempts"] == "2"
    assert hung.requests >= 1
    assert router.fleet.backends["a-hung"].counters["timeout"] == hung.requests


async def test_hung_backend_alone_gives_504_naming_the_first_byte_bound(
    faulty_backend, make_router
):
    hung = await faulty_backend("hang")
    client = await make_router(
        [{"name": "h", "url": hung.url, "kind": "openai"}], first_byte_timeout_s=0.2
    )
    resp = await client.post("/v1/chat/completions", json=chat(stream=False))
    assert resp.status == 504
    assert "backend h: timeout: no answer within 0.2s" in (await resp.json())["error"]["message"]
    ollama = await client.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
    assert ollama.status == 504
    assert "no answer within 0.2s" in (await ollama.json())["error"]


async def test_non_streaming_answer_is_assembled_from_the_stream(aiohttp_server, make_router):
    seen: list[dict[str, Any]] = []

    async def chat_handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunks = [
            {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "up-m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
            {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "up-m",
             "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
            {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "up-m",
             "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                      "total_tokens": 5}},
        ]  # fmt: skip
        for chunk in chunks:
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    url = await openai_upstream(aiohttp_server, chat_handler, "m")
    client = await make_router([{"name": "o", "url": url, "kind": "openai"}])
    resp = await client.post("/v1/chat/completions", json=chat(stream=False))
    assert resp.status == 200 and resp.content_type == "application/json"
    answer = await resp.json()
    assert answer["object"] == "chat.completion" and answer["id"] == "c1"
    assert answer["choices"] == [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello"},
            "logprobs": None,
        }
    ]
    assert answer["usage"]["total_tokens"] == 5
    assert seen[-1]["stream"] is True and seen[-1]["stream_options"] == {"include_usage": True}
    ollama = await client.post("/api/chat", json=chat(stream=False))
    body = await ollama.json()
    assert body["message"]["content"] == "Hello" and body["done"] is True
    assert body["eval_count"] == 2 and body["prompt_eval_count"] == 3


def test_openai_tool_call_chunks_become_one_message():
    asm = StreamAssembler("openai")
    first = {"index": 0, "id": "call_1", "type": "function"}
    first["function"] = {"name": "get", "arguments": '{"a"'}
    asm.feed({"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})
    rest = {"index": 0, "function": {"arguments": ": 1}"}}
    choice = {"index": 0, "delta": {"tool_calls": [rest]}, "finish_reason": "tool_calls"}
    asm.feed({"id": "x", "choices": [choice]})
    whole = asm.result()
    assert whole is not None
    message = whole["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}}
    ]
    assert whole["choices"][0]["finish_reason"] == "tool_calls"


def test_ollama_ndjson_becomes_the_done_object_with_the_whole_text():
    asm = StreamAssembler("ollama")
    asm.feed({"model": "m", "message": {"role": "assistant", "content": "Hel"}, "done": False})
    asm.feed({"model": "m", "message": {"role": "assistant", "content": "lo"}, "done": False})
    asm.feed({"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
              "done_reason": "stop", "eval_count": 2})  # fmt: skip
    assert asm.result() == {
        "model": "m",
        "message": {"role": "assistant", "content": "Hello"},
        "done": True,
        "done_reason": "stop",
        "eval_count": 2,
    }


def test_anthropic_events_become_one_message():
    asm = StreamAssembler("anthropic")
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message",
         "role": "assistant", "model": "m", "content": [], "stop_reason": None,
         "usage": {"input_tokens": 4, "output_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use",
         "id": "t1", "name": "get", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
         "partial_json": "{\"a\": 1}"}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]  # fmt: skip
    for event in events:
        asm.feed(event)
    whole = asm.result()
    assert whole is not None
    assert whole["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "t1", "name": "get", "input": {"a": 1}},
    ]
    assert whole["stop_reason"] == "tool_use"
    assert whole["usage"] == {"input_tokens": 4, "output_tokens": 5}


def test_responses_stream_gives_the_completed_response_and_incomplete_gives_none():
    asm = StreamAssembler("responses")
    asm.feed({"type": "response.created", "response": {"id": "r", "status": "in_progress"}})
    assert asm.result() is None  # cut here: no answer, the router retries
    asm.feed({"type": "response.output_text.delta", "delta": "Hi"})
    asm.feed({"type": "response.completed", "response": {"id": "r", "status": "completed"}})
    assert asm.result() == {"id": "r", "status": "completed"}
