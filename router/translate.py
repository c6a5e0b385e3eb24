"""Ollama API <-> OpenAI API, for Ollama clients in front of OpenAI-speaking backends.

llama-server, llama-swap and ``openai`` backends speak only the OpenAI protocol, so an
Ollama ``/api/chat`` becomes ``/v1/chat/completions`` and the answer comes back the way
Ollama writes it: NDJSON by default, durations in nanoseconds, ``done_reason``, tool-call
arguments as objects, errors as ``{"error": "..."}``. Everything here is pure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# Ollama option -> OpenAI field (num_ctx has no OpenAI equivalent: the backend's context rules)
OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "num_predict": "max_tokens",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repeat_penalty": "repeat_penalty",
}

FINISH_TO_DONE_REASON = {"stop": "stop", "length": "length", "tool_calls": "stop"}


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _options(
    body: dict[str, Any], out: dict[str, Any], fields: dict[str, str] = OPTION_FIELDS
) -> None:
    options = body.get("options") or {}
    if not isinstance(options, dict):
        return
    for key, target in fields.items():
        if key in options:
            value = options[key]
            if key == "num_predict" and isinstance(value, int | float) and value <= 0:
                continue  # no limit in Ollama (it stops at num_predict > 0 only): leave it out
            out[target] = value


def _format(body: dict[str, Any], out: dict[str, Any]) -> None:
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": fmt, "strict": True},
        }


def _think(body: dict[str, Any], out: dict[str, Any]) -> None:
    think = body.get("think")
    if isinstance(think, bool):
        out["chat_template_kwargs"] = {"enable_thinking": think}
    elif isinstance(think, str):
        out["chat_template_kwargs"] = {"enable_thinking": True}
        out["reasoning_effort"] = think if think in ("low", "medium", "high") else "high"


def _message_to_openai(msg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": msg.get("role", "user"), "content": msg.get("content") or ""}
    images = msg.get("images") or []
    if images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": out["content"]}]
        for image in images:
            url = image if str(image).startswith("data:") else f"data:image/png;base64,{image}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        out["content"] = parts
    if msg.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": call.get("id") or f"call_{i}",
                "type": "function",
                "function": {
                    "name": call.get("function", {}).get("name", ""),
                    "arguments": _args_to_string(call.get("function", {}).get("arguments")),
                },
            }
            for i, call in enumerate(msg["tool_calls"])
        ]
    if msg.get("role") == "tool":
        if msg.get("tool_call_id"):
            out["tool_call_id"] = msg["tool_call_id"]
        if msg.get("tool_name"):
            out["name"] = msg["tool_name"]
    return out


def _args_to_string(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args or {})


def _args_to_object(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args) if args.strip() else {}
        except ValueError:
            return {"_raw": args}  # keep what the model wrote rather than drop the call
    return args or {}


def _messages_to_openai(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama messages -> OpenAI ones, each ``tool`` result tied to the call it answers.

    Ollama clients name the tool (``tool_name``) and seldom send ``tool_call_id``; OpenAI
    ties a result to its call by id. A result without one gets the id of the first call of
    the assistant message before it not yet answered: the one of that name, else in order.
    """
    out = []
    pending: list[dict[str, Any]] = []  # the last assistant message's calls not yet answered
    for msg in messages:
        converted = _message_to_openai(msg)
        if converted.get("tool_calls"):
            pending = list(converted["tool_calls"])
        elif converted["role"] == "tool":
            if "tool_call_id" not in converted and pending:
                named = [c for c in pending if c["function"]["name"] == msg.get("tool_name")]
                converted["tool_call_id"] = (named or pending)[0]["id"]
            pending = [c for c in pending if c["id"] != converted.get("tool_call_id")]
        else:
            pending = []
        out.append(converted)
    return out


def chat_request(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """Ollama ``/api/chat`` body -> OpenAI ``/v1/chat/completions`` body."""
    out: dict[str, Any] = {
        "model": upstream_model,
        "messages": _messages_to_openai(body.get("messages") or []),
        "stream": body.get("stream", True) is not False,
    }
    if out["stream"]:
        out["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        out["tools"] = body["tools"]
    _options(body, out)
    _format(body, out)
    _think(body, out)
    return out


def generate_request(body: dict[str, Any], upstream_model: str) -> tuple[str, dict[str, Any]]:
    """Ollama ``/api/generate`` -> (OpenAI path, body).

    Ollama applies the model's template unless ``raw``; the OpenAI chat endpoint does the
    same, so a plain prompt becomes a one-message chat. ``raw`` and ``suffix`` (fill in the
    middle) go to ``/v1/completions`` untemplated.
    """
    stream = body.get("stream", True) is not False
    out: dict[str, Any]
    if body.get("raw") or body.get("suffix"):
        prompt = body.get("prompt") or ""
        if body.get("system") and not body.get("raw"):
            prompt = f"{body['system']}\n\n{prompt}"
        out = {"model": upstream_model, "prompt": prompt, "stream": stream}
        if body.get("suffix"):
            out["suffix"] = body["suffix"]
        path = "/v1/completions"
    else:
        messages = []
        if body.get("system"):
            messages.append({"role": "system", "content": body["system"]})
        user = _message_to_openai(
            {"role": "user", "content": body.get("prompt") or "", "images": body.get("images")}
        )
        messages.append(user)
        out = {"model": upstream_model, "messages": messages, "stream": stream}
        path = "/v1/chat/completions"
    if stream:
        out["stream_options"] = {"include_usage": True}
    _options(body, out)
    _format(body, out)
    _think(body, out)
    return path, out


# Ollama option -> llama-server native (/completion, /infill) field
NATIVE_OPTION_FIELDS = {**OPTION_FIELDS, "num_predict": "n_predict"}


def infill_request(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """Ollama ``/api/generate`` with ``suffix`` -> llama-server ``/infill`` (fill in the middle).

    ``prompt`` is the code before the cursor (``input_prefix``), ``suffix`` the code after
    (``input_suffix``); llama-server builds the model's FIM prompt from its FIM tokens.
    """
    out: dict[str, Any] = {
        "model": upstream_model,
        "input_prefix": body.get("prompt") or "",
        "input_suffix": body.get("suffix") or "",
        "stream": body.get("stream", True) is not False,
    }
    _options(body, out, NATIVE_OPTION_FIELDS)
    return out


OPENAI_NATIVE_FIELDS = {
    "max_tokens": "n_predict",
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def openai_infill_request(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """OpenAI ``/v1/completions`` with ``suffix`` -> llama-server ``/infill``."""
    prompt = body.get("prompt") or ""
    out: dict[str, Any] = {
        "model": upstream_model,
        "input_prefix": prompt if isinstance(prompt, str) else "".join(map(str, prompt)),
        "input_suffix": body.get("suffix") or "",
        "stream": bool(body.get("stream")),
    }
    for key, target in OPENAI_NATIVE_FIELDS.items():
        if body.get(key) is not None:
            out[target] = body[key]
    if isinstance(out.get("stop"), str):  # OpenAI allows one string; /infill reads only a list
        out["stop"] = [out["stop"]]
    return out


def infill_completion(obj: dict[str, Any], model: str, chunk: bool) -> dict[str, Any]:
    """llama-server ``/infill`` answer (or stream chunk) -> OpenAI ``text_completion``."""
    finish = None
    if obj.get("stop"):
        finish = "length" if obj.get("stop_type") == "limit" else "stop"
    out: dict[str, Any] = {
        "id": f"cmpl-{obj.get('id_slot', 0)}-{int(time.time() * 1000)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": obj.get("content") or "",
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
    }
    if not chunk or obj.get("stop"):
        prompt, completion = obj.get("tokens_evaluated") or 0, obj.get("tokens_predicted") or 0
        out["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return out


def embed_request(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """Ollama ``/api/embed`` (``input``) or ``/api/embeddings`` (``prompt``) -> OpenAI."""
    text = body.get("input", body.get("prompt", ""))
    out: dict[str, Any] = {"model": upstream_model, "input": text}
    if body.get("dimensions"):
        out["dimensions"] = body["dimensions"]
    return out


def embed_response(
    resp: dict[str, Any], model: str, legacy: bool, elapsed_ns: int
) -> dict[str, Any]:
    vectors = [item.get("embedding", []) for item in resp.get("data") or []]
    if legacy:
        return {"embedding": vectors[0] if vectors else []}
    usage = resp.get("usage") or {}
    return {
        "model": model,
        "embeddings": vectors,
        "total_duration": elapsed_ns,
        "load_duration": 0,
        "prompt_eval_count": usage.get("prompt_tokens", 0),
    }


@dataclass
class Timing:
    """Wall-clock marks of one request (``time.monotonic`` seconds)."""

    start: float
    loaded: bool = False  # this request waited for a load
    first_byte: float | None = None
    first_token: float | None = None
    end: float | None = None


@dataclass
class OllamaReply:
    """Builds Ollama chat/generate output from OpenAI responses or stream chunks.

    Feed ``chunk(obj)`` with each parsed SSE ``data:`` object (or ``whole(obj)`` with a
    non-streaming response); ``lines()`` gives what to send so far, ``final()`` the
    ``done: true`` object with counts and nanosecond durations.
    """

    model: str
    chat: bool
    timing: Timing
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    server_timings: dict[str, Any] = field(default_factory=dict)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)

    def _piece(self, content: str, thinking: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": now_rfc3339()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            out["message"] = message
        else:
            out["response"] = content
            if thinking:
                out["thinking"] = thinking
        out["done"] = False
        return out

    def _usage(self, obj: dict[str, Any]) -> None:
        usage = obj.get("usage") or {}
        self.prompt_tokens = usage.get("prompt_tokens") or self.prompt_tokens
        self.completion_tokens = usage.get("completion_tokens") or self.completion_tokens
        if isinstance(obj.get("timings"), dict):
            self.server_timings = obj["timings"]

    def _native(self, obj: dict[str, Any]) -> None:
        """llama-server's own completion format (``/infill``, ``/completion``)."""
        if obj.get("stop"):
            self.finish_reason = "length" if obj.get("stop_type") == "limit" else "stop"
        self.prompt_tokens = obj.get("tokens_evaluated") or self.prompt_tokens
        self.completion_tokens = obj.get("tokens_predicted") or self.completion_tokens

    def chunk(self, obj: dict[str, Any]) -> None:
        self._usage(obj)
        if "choices" not in obj and "content" in obj:
            content = obj.get("content") or ""
            if content:
                self.timing.first_token = self.timing.first_token or time.monotonic()
                self.pending.append(self._piece(content))
                self.text.append(content)
            self._native(obj)
            return
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            content = delta.get("content") or choice.get("text") or ""
            thinking = delta.get("reasoning_content") or delta.get("reasoning") or ""
            if content or thinking:
                self.timing.first_token = self.timing.first_token or time.monotonic()
                self.pending.append(self._piece(content, thinking))
                self.text.append(content)
            for call in delta.get("tool_calls") or []:
                index = call.get("index", len(self.tool_calls))
                slot = self.tool_calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def whole(self, obj: dict[str, Any]) -> None:
        self._usage(obj)
        if "choices" not in obj and "content" in obj:
            self.text.append(obj.get("content") or "")
            self._native(obj)
            return
        choice = (obj.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        self.text.append(message.get("content") or choice.get("text") or "")
        self.thinking.append(message.get("reasoning_content") or message.get("reasoning") or "")
        for i, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            self.tool_calls[i] = {
                "id": call.get("id") or "",
                "name": function.get("name", ""),
                "arguments": function.get("arguments", ""),
            }
        self.finish_reason = choice.get("finish_reason")

    def lines(self) -> list[dict[str, Any]]:
        out, self.pending = self.pending, []
        return out

    def _ollama_tool_calls(self) -> list[dict[str, Any]]:
        """Ollama's tool calls: ``arguments`` an object; the backend's ``id`` when it gave one
        (Ollama's own answers carry one, and its clients send it back as ``tool_call_id``)."""
        calls = []
        for _, c in sorted(self.tool_calls.items()):
            call = {"id": c["id"]} if c["id"] else {}
            call["function"] = {"name": c["name"], "arguments": _args_to_object(c["arguments"])}
            calls.append(call)
        return calls

    def tool_call_line(self) -> dict[str, Any] | None:
        """Streamed tool calls are buffered and sent as one chunk before the final one."""
        if not self.tool_calls or not self.chat:
            return None
        line = self._piece("")
        line["message"]["tool_calls"] = self._ollama_tool_calls()
        return line

    def final(self, streamed: bool) -> dict[str, Any]:
        end = self.timing.end or time.monotonic()
        start = self.timing.start
        first_byte = self.timing.first_byte or end
        first_token = self.timing.first_token or first_byte
        st = self.server_timings
        prompt_ns = int(st["prompt_ms"] * 1e6) if "prompt_ms" in st else _ns(first_token - start)
        eval_ns = int(st["predicted_ms"] * 1e6) if "predicted_ms" in st else _ns(end - first_token)
        load_ns = _ns(first_byte - start) - prompt_ns if self.timing.loaded else 0
        out: dict[str, Any] = (streamed and self._piece("")) or self._piece(
            "".join(self.text), "".join(self.thinking)
        )
        if not streamed and self.chat and self.tool_calls:
            out["message"]["tool_calls"] = self._ollama_tool_calls()
        out.update(
            done=True,
            done_reason=FINISH_TO_DONE_REASON.get(self.finish_reason or "stop", "stop"),
            total_duration=_ns(end - start),
            load_duration=max(0, load_ns),
            prompt_eval_count=self.prompt_tokens or st.get("prompt_n", 0),
            prompt_eval_duration=prompt_ns,
            eval_count=self.completion_tokens or st.get("predicted_n", 0),
            eval_duration=eval_ns,
        )
        if not self.chat:
            out["context"] = []
        return out


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


def openai_error_message(body: bytes) -> str:
    """The message inside an OpenAI (or llama-server) error body, for Ollama's shape."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:500] or "backend error"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err:
            return str(err)
        if obj.get("message"):
            return str(obj["message"])
    return str(obj)[:500]


# -- non-streaming answers assembled from a stream -------------------------------------------
#
# The router asks the backend for a *stream* even when the client wants one JSON answer: a
# stream's first byte comes as soon as the backend starts, so ``first_byte_timeout_s`` can
# tell a hung backend from a slow answer on every request. The answer is then put together
# here, in the shape the backend would have sent had it been asked for one object.

# where an OpenAI-shaped answer carries reasoning: llama-server's name, then Ollama's /v1 one
REASONING_FIELDS = ("reasoning_content", "reasoning")

StreamFormat = Literal["openai", "ollama", "responses", "anthropic", "llama"]


class StreamAssembler:
    """Feed the parsed objects of one stream (``feed``); ``result()`` is the whole answer.

    Formats: ``openai`` (chat and text completion chunks), ``ollama`` (native NDJSON),
    ``llama`` (llama-server's own ``/infill`` chunks),
    ``responses`` (OpenAI Responses events), ``anthropic`` (Messages events). ``error`` holds
    an error object the stream carried instead of an answer.

    Example::

        asm = StreamAssembler("openai")
        for obj in chunks:
            asm.feed(obj)
        asm.result()  # {"object": "chat.completion", "choices": [{"message": ...}], ...}
    """

    def __init__(self, fmt: StreamFormat) -> None:
        self.fmt = fmt
        self.head: dict[str, Any] | None = None  # the first object: ids, model, created
        self.last: dict[str, Any] = {}
        self.error: Any = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.text: list[str] = []
        self.thinking: list[str] = []
        self.tool_calls: list[Any] = []
        self.done: dict[str, Any] | None = None
        self._take: Callable[[dict[str, Any]], None] = getattr(self, "_" + fmt)

    def feed(self, obj: dict[str, Any]) -> None:
        if "error" in obj and not obj.get("choices") and self.fmt != "anthropic":
            self.error = obj["error"]
            return
        if self.head is None:
            self.head = obj
        self.last = obj
        self._take(obj)

    def _openai(self, obj: dict[str, Any]) -> None:
        for choice in obj.get("choices") or []:
            index = choice.get("index", 0)
            slot = self.choices.get(index)
            if slot is None:  # not setdefault: no new dict per chunk
                slot = {"content": [], "reasoning": [], "tools": {}, "logprobs": [], "finish": None}
                self.choices[index] = slot
            delta = choice.get("delta")
            if isinstance(delta, dict):
                slot["chat"] = True
                if delta.get("content"):
                    slot["content"].append(delta["content"])
                for key in REASONING_FIELDS:  # one of them: a backend may send both
                    if delta.get(key):
                        slot["reasoning"].append(delta[key])
                        slot["reasoning_key"] = key  # answered under the backend's own name
                        break
                for call in delta.get("tool_calls") or []:
                    tool = slot["tools"].setdefault(
                        call.get("index", len(slot["tools"])),
                        {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                    )
                    tool["id"] = call.get("id") or tool["id"]
                    function = call.get("function") or {}
                    tool["function"]["name"] += function.get("name") or ""
                    tool["function"]["arguments"] += function.get("arguments") or ""
            else:
                slot["content"].append(choice.get("text") or "")
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
                slot["logprobs"].extend(logprobs["content"])
            if choice.get("finish_reason"):
                slot["finish"] = choice["finish_reason"]

    def _ollama(self, obj: dict[str, Any]) -> None:
        message = obj.get("message")
        if isinstance(message, dict):
            self.text.append(message.get("content") or "")
            self.thinking.append(message.get("thinking") or "")
            self.tool_calls.extend(message.get("tool_calls") or [])
        else:
            self.text.append(obj.get("response") or "")
            self.thinking.append(obj.get("thinking") or "")
        if obj.get("done"):
            self.done = obj

    def _responses(self, obj: dict[str, Any]) -> None:
        if obj.get("type") in ("response.completed", "response.incomplete", "response.failed"):
            self.done = obj.get("response")
        elif obj.get("type") == "error":
            self.error = obj.get("error") or obj

    def _anthropic(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "message_start":
            self.done = dict(obj.get("message") or {})
        elif kind == "content_block_start":
            self.blocks[obj.get("index", len(self.blocks))] = dict(obj.get("content_block") or {})
        elif kind == "content_block_delta":
            block = self.blocks.setdefault(obj.get("index", 0), {"type": "text", "text": ""})
            delta = obj.get("delta") or {}
            for field_name, key in (
                ("text", "text"),
                ("thinking", "thinking"),
                ("signature", "signature"),
                ("partial_json", "_json"),
            ):
                if field_name in delta:
                    block[key] = block.get(key, "") + delta[field_name]
        elif kind == "message_delta" and self.done is not None:
            self.done.update(obj.get("delta") or {})
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self.done["usage"] = {**(self.done.get("usage") or {}), **usage}
        elif kind == "error":
            self.error = obj.get("error") or obj

    def result(self) -> dict[str, Any] | None:
        """The assembled answer; None when the stream ended before one was complete."""
        return getattr(self, "_result_" + self.fmt)()

    def _result_openai(self) -> dict[str, Any] | None:
        if self.head is None:
            return None
        out = {k: v for k, v in self.head.items() if k not in ("choices", "usage", "timings")}
        chat = any(slot.get("chat") for slot in self.choices.values())
        out["object"] = "chat.completion" if chat else "text_completion"
        choices = []
        for index, slot in sorted(self.choices.items()):
            choice: dict[str, Any] = {"index": index, "finish_reason": slot["finish"]}
            text = "".join(slot["content"])
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                reasoning = "".join(slot["reasoning"])
                if reasoning:
                    message[slot.get("reasoning_key", "reasoning_content")] = reasoning
                if slot["tools"]:
                    message["tool_calls"] = [t for _, t in sorted(slot["tools"].items())]
                    message["content"] = text or None
                choice["message"] = message
            else:
                choice["text"] = text
            choice["logprobs"] = {"content": slot["logprobs"]} if slot["logprobs"] else None
            choices.append(choice)
        out["choices"] = choices
        for key in ("usage", "timings", "system_fingerprint"):
            if self.last.get(key) is not None:
                out[key] = self.last[key]
        return out

    def _result_ollama(self) -> dict[str, Any] | None:
        if self.done is None:
            return None
        out = dict(self.done)
        thinking = "".join(self.thinking)
        if isinstance(out.get("message"), dict):
            message = {**out["message"], "content": "".join(self.text)}
            if thinking:
                message["thinking"] = thinking
            if self.tool_calls:
                message["tool_calls"] = self.tool_calls
            out["message"] = message
        else:
            out["response"] = "".join(self.text)
            if thinking:
                out["thinking"] = thinking
        return out

    def _llama(self, obj: dict[str, Any]) -> None:
        self.text.append(obj.get("content") or "")
        if obj.get("stop"):
            self.done = obj

    def _result_llama(self) -> dict[str, Any] | None:
        return None if self.done is None else {**self.done, "content": "".join(self.text)}

    def _result_responses(self) -> dict[str, Any] | None:
        return self.done

    def _result_anthropic(self) -> dict[str, Any] | None:
        if self.done is None:
            return None
        content = []
        for _, block in sorted(self.blocks.items()):
            block = dict(block)
            partial = block.pop("_json", None)
            if partial is not None:
                try:
                    block["input"] = json.loads(partial) if partial.strip() else {}
                except ValueError:
                    block["input"] = {"_raw": partial}
            content.append(block)
        return {**self.done, "content": content}
