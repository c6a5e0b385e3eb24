"""Client compatibility: the official ``ollama``, ``openai`` and ``anthropic`` Python clients
against the router process over real llama-server backends (the gemma3 270M GGUF).

Three llama-servers, as a fleet would run them: ``gemma`` (chat, the model's own ``gemma``
template), ``gemma-embed`` (``--embeddings --pooling mean``) and ``gemma-tools`` (``--jinja``
with the chatml template, which takes a ``tools`` field). The model is a tiny BASE model:
assertions are on structure and status, never on text. Where the backend cannot do a thing
(this model has no FIM tokens, the ``gemma`` template has no tools) the test asserts that the
client gets the backend's own status and message through the router: the matrix in
docs/router.md ("Client compatibility") names those "backend limit".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import ollama
import openai
import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import SecretStr

from modelfleet.deploy.lab import llama
from tests.real.conftest import router_process

pytestmark = pytest.mark.real
KEY = "compat-client-key"
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "the time now",
            "parameters": {"type": "object", "properties": {}},
        },
    }
]
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi."}]
HI_ANTHROPIC: list[MessageParam] = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def router_url(
    llama_server_bin: Path, gguf_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("compat")
    servers = {
        "chat": llama.start_llama_server(alias="gemma", log_dir=tmp),
        "embed": llama.start_llama_server(
            alias="gemma-embed", log_dir=tmp, extra_args=["--embeddings", "--pooling", "mean"]
        ),
        "tools": llama.start_llama_server(
            alias="gemma-tools", log_dir=tmp, extra_args=["--jinja", "--chat-template", "chatml"]
        ),
    }
    port = llama.free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "admin_token": "compat-admin-token",
        "api_keys": [KEY],
        "refresh_interval_s": 0.5,
        "backends": [
            {"name": name, "url": server.url, "kind": "llama-server", "slots": 1}
            for name, server in servers.items()
        ],
    }
    try:
        with router_process(config, tmp) as url:
            time.sleep(1.0)  # one refresh: every model known and resident
            yield url
    finally:
        for server in servers.values():
            server.stop()


# -- ollama ---------------------------------------------------------------------------------


def test_ollama_client(router_url: str) -> None:
    client = ollama.Client(host=router_url, headers={"Authorization": f"Bearer {KEY}"})
    assert {m.model for m in client.list().models} == {"gemma", "gemma-embed", "gemma-tools"}
    show = client.show("gemma")
    assert show.capabilities == ["completion"]  # the gemma template takes no tools
    assert show.modelinfo is not None
    assert show.modelinfo["llama.context_length"] == 1024  # llama-server's n_ctx, from /props
    assert show.modelinfo["general.parameter_count"] == 268098176  # from /v1/models meta
    # size and quantization as Ollama writes them for the same GGUF, from the backend's meta
    assert show.details is not None
    assert (show.details.parameter_size, show.details.quantization_level) == ("268.10M", "Q4_K_M")
    running = {m.model: m for m in client.ps().models}
    assert running["gemma"].context_length == 1024
    assert running["gemma"].expires_at is not None and running["gemma"].expires_at.year > 2200
    options = {"num_predict": 4, "temperature": 0}
    reply = client.chat("gemma", messages=HI, options=options)
    assert reply.done and reply.message.role == "assistant" and reply.eval_count
    pieces = list(client.chat("gemma", messages=HI, options=options, stream=True))
    assert pieces[-1].done and not any(p.done for p in pieces[:-1])
    vectors = client.embed("gemma-embed", ["one", "two"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == 640
    tools = client.chat("gemma-tools", messages=HI, tools=TOOLS, options=options)
    assert tools.done  # accepted and answered; a 270M base model calls no tool
    # backend limits come back with the backend's message: an API the backend was not started
    # with as its 501; what it refuses by how it was started (llama-server's 500 for tools
    # without --jinja) as the request's 400 (router/health.py REFUSED_REQUEST)
    with pytest.raises(ollama.ResponseError) as fim:
        client.generate("gemma", prompt="def add(a, b):\n", suffix="\n", options=options)
    assert fim.value.status_code == 501 and "Infill is not supported" in fim.value.error
    with pytest.raises(ollama.ResponseError) as no_tools:
        client.chat("gemma", messages=HI, tools=TOOLS, options=options)
    assert no_tools.value.status_code == 400 and "--jinja" in no_tools.value.error
    with pytest.raises(ollama.ResponseError) as unknown:
        client.chat("nope", messages=HI)
    assert unknown.value.status_code == 404 and "nope" in unknown.value.error
    with pytest.raises(ollama.ResponseError) as no_key:
        ollama.Client(host=router_url).list()
    assert no_key.value.status_code == 401


# -- openai ---------------------------------------------------------------------------------


def test_openai_client(router_url: str) -> None:
    client = openai.OpenAI(base_url=router_url + "/v1", api_key=KEY, max_retries=0)
    assert "gemma" in {m.id for m in client.models.list()}
    chat = client.chat.completions.create(model="gemma", messages=HI, max_tokens=4, temperature=0)
    assert chat.object == "chat.completion" and chat.usage and chat.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(model="gemma", messages=HI, max_tokens=4, stream=True)
    )
    assert chunks and chunks[-1].choices[0].finish_reason in ("stop", "length")
    embedding = client.embeddings.create(model="gemma-embed", input="hello")
    assert len(embedding.data[0].embedding) == 640
    tools = client.chat.completions.create(
        model="gemma-tools",
        messages=HI,
        max_tokens=4,
        tools=TOOLS,
    )
    assert tools.choices[0].finish_reason in ("stop", "length", "tool_calls")
    response = client.responses.create(model="gemma", input="Say hi.", max_output_tokens=16)
    assert response.status in ("completed", "incomplete") and response.output
    events = [e.type for e in client.responses.create(
        model="gemma", input="Say hi.", max_output_tokens=16, stream=True
    )]  # fmt: skip
    assert events[0] == "response.created" and events[-1] == "response.completed"
    with pytest.raises(openai.APIStatusError) as fim:
        client.completions.create(model="gemma", prompt="def f(", suffix="):", max_tokens=4)
    assert fim.value.status_code == 501 and "Infill is not supported" in fim.value.message
    with pytest.raises(openai.BadRequestError) as no_tools:
        client.chat.completions.create(model="gemma", messages=HI, max_tokens=4, tools=TOOLS)
    assert "tools param requires --jinja flag" in no_tools.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nope", messages=HI)
    assert "nope" in unknown.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=router_url + "/v1", api_key="wrong", max_retries=0).models.list()


# -- anthropic ------------------------------------------------------------------------------


def test_anthropic_client(router_url: str) -> None:
    client = anthropic.Anthropic(base_url=router_url, api_key=KEY, max_retries=0)  # x-api-key
    message = client.messages.create(model="gemma", max_tokens=8, messages=HI_ANTHROPIC)
    assert message.type == "message" and message.content[0].type == "text"
    assert message.stop_reason in ("end_turn", "max_tokens") and message.usage.output_tokens > 0
    with client.messages.stream(model="gemma", max_tokens=8, messages=HI_ANTHROPIC) as stream:
        final = stream.get_final_message()
    assert final.content and final.stop_reason in ("end_turn", "max_tokens")
    counted = client.messages.count_tokens(model="gemma", messages=HI_ANTHROPIC)
    assert counted.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.create(model="nope", max_tokens=8, messages=HI_ANTHROPIC)
    assert unknown.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'nope' not found on any backend"},
    }
    wrong = anthropic.Anthropic(base_url=router_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model="gemma", max_tokens=8, messages=HI_ANTHROPIC)


# -- LangChain ------------------------------------------------------------------------------


def test_langchain_chat_ollama_and_chat_openai(router_url: str) -> None:
    from langchain_ollama import ChatOllama
    from langchain_openai import ChatOpenAI

    auth = {"headers": {"Authorization": f"Bearer {KEY}"}}
    ollama_chat = ChatOllama(
        model="gemma", base_url=router_url, client_kwargs=auth, num_predict=4, temperature=0
    )
    reply = ollama_chat.invoke("Say hi.")
    assert reply.type == "ai" and reply.response_metadata["done"] is True
    assert len(list(ollama_chat.stream("Say hi."))) > 1
    openai_chat = ChatOpenAI(
        model="gemma",
        base_url=router_url + "/v1",
        api_key=SecretStr(KEY),
        max_completion_tokens=4,  # the field max_tokens, by its alias
        max_retries=0,
    )
    reply = openai_chat.invoke("Say hi.")
    assert reply.type == "ai" and reply.response_metadata["finish_reason"] in ("stop", "length")
    assert len(list(openai_chat.stream("Say hi."))) > 1
    responses_chat = ChatOpenAI(
        model="gemma",
        base_url=router_url + "/v1",
        api_key=SecretStr(KEY),
        max_completion_tokens=16,
        max_retries=0,
        use_responses_api=True,
    )
    reply = responses_chat.invoke("Say hi.")
    assert reply.type == "ai" and reply.response_metadata.get("status") in (
        "completed",
        "incomplete",
    )
