"""Request shapes at the edge: every client body is checked here before anything reads it.

Each front endpoint has a pydantic model of the fields the router (or its Ollama -> OpenAI
translation) reads; unknown fields are allowed and passed on. A body that does not fit gets
a 400 naming the field path and what was expected, e.g.
``messages[0].images: expected a list of base64 strings (got a number)``. Strict types: a
number is never silently taken as a string, nor a string as a boolean.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_DEPTH = 64  # JSON nesting; deeper bodies are refused before anything recurses into them


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


Number = int | float
KeepAlive = str | Number | None
PositiveInt = Annotated[int, Field(ge=1)]


# -- Ollama ----------------------------------------------------------------------------------


class ToolFunction(_Body):
    name: str = ""
    arguments: dict[str, Any] | str | None = None


class ToolCall(_Body):
    function: ToolFunction
    id: str | None = None


class OllamaMessage(_Body):
    role: str = "user"
    content: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    thinking: str | None = None


class _OllamaCall(_Body):
    model: str | None = None
    name: str | None = None  # older clients
    stream: bool | None = None
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None
    format: str | dict[str, Any] | None = None
    think: bool | str | None = None


class OllamaChat(_OllamaCall):
    messages: list[OllamaMessage] | None = None
    tools: list[dict[str, Any]] | None = None


class OllamaGenerate(_OllamaCall):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    images: list[str] | None = None
    raw: bool | None = None
    context: list[int] | None = None


class OllamaEmbed(_OllamaCall):
    input: str | list[str] | None = None
    truncate: bool | None = None
    dimensions: int | None = None


class OllamaEmbeddings(_OllamaCall):
    prompt: str | None = None


class OllamaModelRef(_Body):
    """``/api/show``, ``/api/delete``, ``/api/push``, ``/api/create``."""

    model: str | None = None
    name: str | None = None
    stream: bool | None = None
    verbose: bool | None = None
    insecure: bool | None = None


class OllamaPull(OllamaModelRef):
    backend: str | None = None  # the router's own field: pull on this backend only


class OllamaCopy(_Body):
    source: str
    destination: str


# -- OpenAI ----------------------------------------------------------------------------------


class OpenAIMessage(_Body):
    role: str
    content: str | list[dict[str, Any]] | None = None


class _OpenAICall(_Body):
    model: str | None = None
    stream: bool | None = None


class OpenAIChat(_OpenAICall):
    messages: list[OpenAIMessage]


Tokens = str | list[str] | list[int] | list[list[int]]


class OpenAICompletion(_OpenAICall):
    prompt: Tokens | None = None


class OpenAIEmbeddings(_OpenAICall):
    input: Tokens


class OpenAIResponses(_OpenAICall):
    """``/v1/responses`` (stateless: the items of ``input`` are the backend's to read)."""

    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None


# -- Anthropic -------------------------------------------------------------------------------


class AnthropicMessage(_Body):
    role: str
    content: str | list[dict[str, Any]]


class AnthropicCountTokens(_Body):
    model: str | None = None
    messages: list[AnthropicMessage]
    system: str | list[dict[str, Any]] | None = None


class AnthropicMessages(AnthropicCountTokens):
    # required by the API; without it llama-server would generate until its context is full
    max_tokens: PositiveInt
    stream: bool | None = None
    stop_sequences: list[str] | None = None


SCHEMAS: dict[str, type[_Body]] = {
    "/api/chat": OllamaChat,
    "/api/generate": OllamaGenerate,
    "/api/embed": OllamaEmbed,
    "/api/embeddings": OllamaEmbeddings,
    "/api/show": OllamaModelRef,
    "/api/pull": OllamaPull,
    "/api/push": OllamaModelRef,
    "/api/create": OllamaModelRef,
    "/api/delete": OllamaModelRef,
    "/api/copy": OllamaCopy,
    "/v1/chat/completions": OpenAIChat,
    "/v1/completions": OpenAICompletion,
    "/v1/embeddings": OpenAIEmbeddings,
    "/v1/responses": OpenAIResponses,
    "/v1/messages": AnthropicMessages,
    "/v1/messages/count_tokens": AnthropicCountTokens,
}

# what a field should hold, in words (the last named part of the path picks the entry)
EXPECTED = {
    "model": "a model name (string)",
    "name": "a model name (string)",
    "messages": "a list of message objects",
    "images": "a list of base64 strings",
    "tool_calls": "a list of tool call objects ({'function': {...}})",
    "function": "an object with 'name' and 'arguments'",
    "arguments": "an object (or a JSON string)",
    "tools": "a list of tool objects",
    "content": "a string",
    "role": "a string",
    "stream": "true or false",
    "raw": "true or false",
    "insecure": "true or false",
    "keep_alive": "a duration ('5m', '1h30m') or a number of seconds",
    "options": "an object",
    "format": "'json' or a JSON schema object",
    "think": "true, false, or 'low' / 'medium' / 'high'",
    "prompt": "a string",
    "input": "a string or a list of strings",
    "max_tokens": "a positive integer",
    "max_output_tokens": "a positive integer",
    "instructions": "a string",
    "system": "a string or a list of text blocks",
    "stop_sequences": "a list of strings",
    "context": "a list of integers",
    "backend": "a backend name (string)",
    "source": "a model name (string)",
    "destination": "a model name (string)",
}


# where an endpoint's field holds more than the name says elsewhere
BLOCKS = {"content": "a string or a list of content blocks"}
EXPECTED_AT = {
    "/v1/chat/completions": BLOCKS,
    "/v1/responses": {"input": "a string or a list of input items"},
    "/v1/messages": BLOCKS,
    "/v1/messages/count_tokens": BLOCKS,
}

# what one item of a list field should be
EXPECTED_ITEM = {
    "messages": "a message object",
    "images": "a base64 string",
    "tool_calls": "a tool call object ({'function': {...}})",
    "tools": "a tool object",
    "context": "an integer",
    "input": "a string",
    "prompt": "a string",
    "stop_sequences": "a string",
}


class ShapeError(ValueError):
    """The body does not fit its endpoint; the message names the field path."""


def check(path: str, body: dict[str, Any]) -> None:
    """Raise ``ShapeError`` when ``body`` is not what ``path`` takes.

    Example::

        check("/api/chat", {"model": "m", "messages": "hello"})
        # ShapeError: messages: expected a list of message objects (got a string)
    """
    schema = SCHEMAS.get(path)
    if schema is None:
        return
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        raise ShapeError(describe(exc, body, EXPECTED_AT.get(path, {}))) from None


def describe(exc: ValidationError, body: Any, expected_here: dict[str, str]) -> str:
    problems: dict[str, str] = {}
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        parts = [p for p in err["loc"] if not _is_type_tag(p)]
        where = field_path(parts) or "(body)"
        if where in problems:
            continue  # one line per field, though a union reports each member
        names = [p for p in parts if isinstance(p, str)]
        if err["type"] == "missing":
            problems[where] = "required"
            continue
        item = bool(parts) and isinstance(parts[-1], int)
        words = EXPECTED_ITEM if item else EXPECTED | expected_here
        expected = words.get(names[-1]) if names else None
        what = f"expected {expected}" if expected else err["msg"].lower()
        problems[where] = f"{what} (got {_kind(_value_at(body, parts))})"
    return "; ".join(f"{where}: {what}" for where, what in list(problems.items())[:3])


def field_path(parts: list[Any]) -> str:
    """``["messages", 0, "images"]`` -> ``messages[0].images``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def too_deep(value: Any, limit: int = MAX_DEPTH) -> str | None:
    """The path of the first value nested deeper than ``limit`` (no recursion), else None."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        item, parts = stack.pop()
        if len(parts) > limit:
            return field_path(parts[:4]) + "..." if parts else "(body)"
        if isinstance(item, dict):
            stack.extend((v, [*parts, str(k)]) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, [*parts, i]) for i, v in enumerate(item))
    return None


def _is_type_tag(part: Any) -> bool:
    """pydantic puts the union member it tried into ``loc`` (``str``, ``list[str]`` ...)."""
    if not isinstance(part, str):
        return False
    return part in ("str", "int", "float", "bool", "none") or any(c in part for c in "[]-")


def _value_at(body: Any, parts: list[Any]) -> Any:
    for part in parts:
        found = (isinstance(body, dict) and part in body) or (
            isinstance(body, list) and isinstance(part, int) and part < len(body)
        )
        if not found:
            return _Missing
        body = body[part]
    return body


class _Missing:
    pass


def _kind(value: Any) -> str:
    if value is _Missing:
        return "nothing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
