"""STAND-IN backend for the proxy benchmark: an OpenAI-compatible server that answers at once.

Not a model and not the project's Ollama stand-in (deploy/lab/standins/ollama.py simulates
loading and scheduling, which would swamp what the proxy benchmark measures). It answers
the OpenAI chat API with a fixed reply so that any time on top of "direct" is the proxy's:

* ``GET /v1/models`` lists ``bench-model``; ``GET /health`` says ok;
* ``POST /v1/chat/completions`` non-streaming: a small JSON completion;
* ``POST /v1/chat/completions`` with ``"stream": true``: ``--chunks`` SSE chunks, one every
  ``--chunk-interval-ms`` (0 = back to back), a usage chunk when ``stream_options`` asks
  for one, then ``data: [DONE]``.

Loopback only::

    python -m bench.fast_backend --port 18080 --chunks 64 --chunk-interval-ms 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

MODEL = "bench-model"


def completion(model: str, tokens: int | None = None) -> dict[str, object]:
    """The whole answer; with ``tokens``, the same text and count a stream of that many has."""
    content = "Hello from the stand-in."
    usage = {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14}
    if tokens is not None:
        content = "".join(f"tok{i} " for i in range(tokens))
        usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def chunk(model: str, index: int, last: bool) -> bytes:
    delta = {} if last else {"content": f"tok{index} "}
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if last else None}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def usage_chunk(model: str, chunks: int) -> bytes:
    usage = {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}
    body: dict[str, object] = {"id": "chatcmpl-bench", "object": "chat.completion.chunk"}
    body |= {"model": model, "created": int(time.time()), "choices": [], "usage": usage}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def create_app(
    chunks: int = 64, chunk_interval_s: float = 0.002, same_answer: bool = False
) -> web.Application:
    """``same_answer``: the whole answer is the stream's text and token count (faithful to a
    real server, where both are one generation); otherwise the short fixed completion."""

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body.get("model") or MODEL
        if not body.get("stream"):
            return web.json_response(completion(model, chunks if same_answer else None))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(chunks):
            await response.write(chunk(model, index, last=False))
            if chunk_interval_s:
                await asyncio.sleep(chunk_interval_s)
        await response.write(chunk(model, chunks, last=True))
        if (body.get("stream_options") or {}).get("include_usage"):  # as OpenAI, llama-server
            await response.write(usage_chunk(model, chunks))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="fast OpenAI stand-in for the proxy benchmark")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--chunk-interval-ms", type=float, default=2.0)
    parser.add_argument(
        "--same-answer", action="store_true", help="whole answers = the stream's tokens"
    )
    args = parser.parse_args()
    app = create_app(args.chunks, args.chunk_interval_ms / 1000, args.same_answer)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
