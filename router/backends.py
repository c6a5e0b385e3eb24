"""What the router learns from each backend kind, and how it loads and unloads models there.

One small adapter per kind (``ollama``, ``llama-swap``, ``llama-server``, ``openai``), each
with ``refresh`` (poll residency into the backend's ``BackendState``), ``load``, ``unload``
and the path of its cheap health probe. Endpoints follow docs/router.md and the backends'
own APIs: Ollama ``/api/ps`` + ``/api/tags``; llama-swap ``/running`` + ``/v1/models``;
llama-server ``/models`` (router mode) or ``/v1/models`` (one model); openai ``/v1/models``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from modelfleet.router.state import BackendState, ModelState

MIB = 1024 * 1024
# keep_alive < 0 makes Ollama report an expiry ~292 years out; anything this far is "never"
PINNED_AFTER_S = 50 * 365 * 86400
LOAD_POLL_S = 0.25  # how often a llama-server load or unload is checked for its end


class BackendError(Exception):
    """A backend answered an admin/refresh call badly; the message names the backend.

    ``status`` is the HTTP status it answered (None: the router refused the call itself);
    ``detail`` the backend's own error message.
    """

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message


@dataclass
class ModelFacts:
    """What a llama.cpp backend reports about one model, for Ollama's ``/api/show``."""

    context_length: int | None = None
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    model_info: dict[str, Any] = field(default_factory=dict)
    template: str = ""


def facts_from(props: dict[str, Any] | None, meta: dict[str, Any] | None) -> ModelFacts:
    """llama-server ``/props`` (n_ctx, modalities, chat template caps) + ``/v1/models`` meta.

    Example::

        facts_from({"default_generation_settings": {"n_ctx": 4096},
                    "chat_template_caps": {"supports_tools": True}}, None)
        # ModelFacts(context_length=4096, capabilities=["completion", "tools"], ...)
    """
    props, meta = props or {}, meta or {}
    facts = ModelFacts()
    settings = props.get("default_generation_settings") or {}
    facts.context_length = settings.get("n_ctx") or meta.get("n_ctx") or None
    caps = props.get("chat_template_caps")
    template = str(props.get("chat_template") or "")
    tools = caps.get("supports_tools") if isinstance(caps, dict) else "tools" in template
    if tools:
        facts.capabilities.append("tools")
    modalities = props.get("modalities") or {}
    facts.capabilities += [m for m in ("vision", "audio") if modalities.get(m)]
    facts.template = template
    for key, info in (
        ("n_params", "general.parameter_count"),
        ("n_ctx_train", "general.context_length_train"),
        ("n_embd", "general.embedding_length"),
        ("n_vocab", "general.vocab_size"),
    ):
        if meta.get(key) is not None:
            facts.model_info[info] = meta[key]
    return facts


# llama.cpp's file-type names (``llama_model_ftype_name``) that Ollama spells with a suffix
_SIZE_SUFFIX = {"Small": "_S", "Medium": "_M", "Large": "_L"}


def human_number(count: int) -> str:
    """A parameter count as Ollama writes ``details.parameter_size`` (its ``HumanNumber``).

    Example::

        human_number(268098176), human_number(8030261248), human_number(70_000_000_000)
        # ("268.10M", "8.0B", "70B")
    """
    for scale, unit, digits in ((1e9, "B", 1), (1e6, "M", 2)):
        if count >= scale:
            value = count / scale
            return f"{value:.0f}{unit}" if value.is_integer() else f"{value:.{digits}f}{unit}"
    return f"{count / 1e3:.0f}K" if count >= 1000 else str(count)


def quantization_name(ftype: str) -> str:
    """llama.cpp's file-type name as Ollama's ``details.quantization_level`` names it.

    Example::

        [quantization_name(f) for f in ("Q4_K - Medium", "Q2_K - Medium", "IQ2_XXS - 2.0625 bpw",
                                        "all F32", "MXFP4 MoE", "Q4_1, some F16")]
        # ["Q4_K_M", "Q2_K", "IQ2_XXS", "F32", "MXFP4", "Q4_1"]
    """
    name = ftype.removesuffix(" (guessed)").removeprefix("all ")
    base, _, rest = name.partition(" - ")
    suffix = _SIZE_SUFFIX.get(rest, "")
    if base == "Q2_K" and rest == "Medium":
        suffix = ""  # llama.cpp's plain Q2_K
    return re.split(r"[ ,]", base)[0] + suffix


def ollama_details(meta: dict[str, Any]) -> dict[str, Any]:
    """Ollama's ``details`` object (``/api/tags``, ``/api/ps``, ``/api/show``) from what a
    llama.cpp backend reports in its ``/v1/models`` ``meta``. llama.cpp does not report the
    architecture over HTTP, so ``family`` stays empty rather than guessed.

    Example::

        ollama_details({"n_params": 268098176, "ftype": "Q4_K - Medium"})
        # {"parent_model": "", "format": "gguf", "family": "", "families": None,
        #  "parameter_size": "268.10M", "quantization_level": "Q4_K_M"}
    """
    params, ftype = meta.get("n_params"), meta.get("ftype")
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "",
        "families": None,
        "parameter_size": human_number(params) if isinstance(params, int) and params > 0 else "",
        "quantization_level": quantization_name(ftype) if isinstance(ftype, str) else "",
    }


def _learn_details(ms: ModelState, meta: Any) -> None:
    """Keep what ``meta`` says of the model's parameters, quantization and file size (it is
    null while the model loads, and absent while it is unloaded: what was learned stays)."""
    if isinstance(meta, dict) and (meta.get("n_params") or meta.get("ftype")):
        ms.details = {"details": ollama_details(meta)}
        if isinstance(meta.get("size"), int):
            ms.details["size"] = meta["size"]


def upstream_base(state: BackendState) -> str:
    """The backend's URL without a trailing slash: paths are appended to it."""
    return state.config.url.rstrip("/")


def auth_headers(state: BackendState) -> dict[str, str]:
    """``Authorization: Bearer`` with the backend's key, if it has one."""
    secret = state.config.secret()
    return {"Authorization": f"Bearer {secret}"} if secret else {}


# The router's session does not decompress (router/app.py: answers are passed on and parsed
# as sent), while aiohttp offers gzip and deflate by default: a backend (or a proxy in front
# of it) that took the offer would send bytes the router can neither parse nor pass on.
IDENTITY = {"Accept-Encoding": "identity"}


def upstream_headers(state: BackendState) -> dict[str, str]:
    """What every call to a backend carries: its key, and a plea for uncompressed answers."""
    return {**IDENTITY, **auth_headers(state)}


class Adapter:
    health_path = "/health"

    def __init__(
        self,
        state: BackendState,
        session: aiohttp.ClientSession,
        timeout_s: float,
        load_timeout_s: float = 300.0,
    ):
        self.since = time.monotonic()  # when the current refresh started asking
        self.state = state
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.load_timeout = aiohttp.ClientTimeout(total=load_timeout_s)  # loads take long

    @property
    def base(self) -> str:
        return upstream_base(self.state)

    def headers(self) -> dict[str, str]:
        return upstream_headers(self.state)

    async def _json(
        self, method: str, path: str, body: Any = None, timeout: aiohttp.ClientTimeout | None = None
    ) -> Any:
        return (await self._json_dated(method, path, body, timeout))[0]

    async def _json_dated(
        self, method: str, path: str, body: Any = None, timeout: aiohttp.ClientTimeout | None = None
    ) -> tuple[Any, str | None]:
        """``_json``, and its ``Date`` header: the backend's clock when it answered."""
        async with self.session.request(
            method,
            self.base + path,
            json=body,
            headers=self.headers(),
            timeout=timeout or self.timeout,
        ) as resp:
            if resp.status >= 400:
                raw = await resp.read()
                detail = _error_message(raw)
                raise BackendError(
                    f"{self.state.name}: {method} {path} -> {resp.status} {detail}",
                    resp.status,
                    detail,
                )
            text = await resp.text()
            date = resp.headers.get("Date")
            try:
                return (json.loads(text) if text.strip() else None), date
            except ValueError:
                return text, date  # llama-swap answers some calls with plain "OK"

    async def probe(self) -> bool:
        """The active health check: is the backend process answering?"""
        async with self.session.get(
            self.base + self.health_path, headers=self.headers(), timeout=self.timeout
        ) as resp:
            await resp.read()
            return resp.status < 500

    async def refresh(self) -> None:
        """Ask the backend what it holds; reports older than our own bookkeeping lose."""
        self.since = time.monotonic()
        await self._refresh()

    async def _refresh(self) -> None:
        raise NotImplementedError

    async def load(
        self, model: str, keep_alive: Any = None, for_embedding: bool | None = None
    ) -> None:
        raise BackendError(f"{self.state.name}: {self.state.kind} backends cannot load on request")

    async def describe(self, model: str) -> ModelFacts | None:
        """Context length and capabilities as the backend reports them; None: it cannot say."""
        return None

    async def _meta(self, model: str) -> dict[str, Any] | None:
        """The ``meta`` of ``model``'s entry in ``/v1/models`` (llama-server, llama-swap)."""
        listing = await self._json("GET", "/v1/models")
        upstream = self.state.upstream_name(model)
        for item in (listing or {}).get("data") or []:
            if item.get("id") == upstream and isinstance(item.get("meta"), dict):
                return dict(item["meta"])
        return None

    async def unload(self, model: str) -> None:
        raise BackendError(
            f"{self.state.name}: {self.state.kind} backends cannot unload on request"
        )

    # -- shared bookkeeping -----------------------------------------------------------------

    def _mark(self, reported: dict[str, ModelState | None], now: float) -> None:
        """Models the backend did not report are cold, unless our own bookkeeping knows better."""
        load_timeout = self.load_timeout.total or 300.0
        for name, ms in self.state.models.items():
            if name in reported:
                continue
            if _router_loading(ms) and now - (ms.load_started or now) < load_timeout:
                # our load is still under way (one a poll only saw, which then vanished from
                # the listing, died or was stopped: it must not stay "loading")
                continue
            if ms.in_flight > 0:
                continue  # a request is running there right now; the next poll will tell
            if ms.observe("cold", self.since):
                ms.vram_mb = None
                ms.expires_at = None


class OllamaAdapter(Adapter):
    health_path = "/api/version"

    async def _refresh(self) -> None:
        tags = await self._json("GET", "/api/tags")
        learned: dict[str, str] = {}
        for item in tags.get("models") or []:
            name = item.get("name") or item.get("model")
            if not name:
                continue
            client = self.state.client_name(name)
            learned[client] = name
            ms = self.state.model(client)
            kept = ("digest", "details", "modified_at", "size")  # size: the file, not the VRAM
            ms.details = {k: item[k] for k in kept if k in item}
            if not ms.size_mb and item.get("size"):
                ms.size_mb = int(item["size"]) // MIB
        self.state.learned = learned

        asked = time.time()
        ps, date = await self._json_dated("GET", "/api/ps")
        skew = _clock_skew(_http_date(date), asked, time.time())
        now = time.monotonic()
        reported: dict[str, ModelState | None] = {}
        for item in ps.get("models") or []:
            name = item.get("name") or item.get("model")
            if not name:
                continue
            ms = self.state.model(self.state.client_name(name))
            expires = parse_time(item.get("expires_at"))  # on the backend's clock
            expires = None if expires is None else expires - skew  # now on ours
            if expires is not None and expires <= time.time() and ms.in_flight == 0:
                # being unloaded: Ollama's keep_alive 0 (or an expired keep-alive) sets
                # expires_at to now and unloads in the background, listing the model
                # until it is gone; no request of ours runs there to keep it
                continue
            reported[ms.model] = ms
            if not ms.observe("loaded", self.since):
                continue
            ms.size_mb = int(item.get("size") or 0) // MIB or ms.size_mb
            if item.get("size_vram") is not None:
                ms.vram_mb = int(item["size_vram"]) // MIB
            ms.expires_at = expires
            ms.pinned = ms.expires_at is not None and ms.expires_at - time.time() > PINNED_AFTER_S
            ms.context_length = item.get("context_length") or ms.context_length
        self._mark(reported, now)

    async def load(
        self, model: str, keep_alive: Any = None, for_embedding: bool | None = None
    ) -> None:
        """Ollama's preload: an empty ``/api/generate``, or ``/api/embed`` with no input
        (``for_embedding``), which loads any model. ``for_embedding=None`` (the admin API,
        which does not know the model's kind) tries the first, then the second for a model
        Ollama says ``does not support generate``."""
        body: dict[str, Any] = {"model": self.state.upstream_name(model), "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        if not for_embedding:
            try:
                await self._json("POST", "/api/generate", {**body, "prompt": ""}, self.load_timeout)
                return
            except BackendError as exc:
                refused = exc.status == 400 and "does not support generate" in exc.detail
                if for_embedding is False or not refused:
                    raise
        await self._json("POST", "/api/embed", {**body, "input": []}, self.load_timeout)

    async def unload(self, model: str) -> None:
        body = {"model": self.state.upstream_name(model), "keep_alive": 0, "stream": False}
        await self._json("POST", "/api/generate", body)


class LlamaSwapAdapter(Adapter):
    health_path = "/health"

    async def _refresh(self) -> None:
        listing = await self._json("GET", "/v1/models")
        learned: dict[str, str] = {}
        status: dict[str, str] = {}
        for item in listing.get("data") or []:
            upstream = item.get("id")
            if not upstream:
                continue
            client = self.state.client_name(upstream)
            learned[client] = upstream
            meta = item.get("meta")
            if isinstance(meta, dict) and meta.get("n_ctx"):
                self.state.model(client).context_length = int(meta["n_ctx"])
            _learn_details(self.state.model(client), meta)
            value = (item.get("status") or {}).get("value")
            if value:
                status[client] = value
        self.state.learned = learned

        running = await self._json("GET", "/running")
        for item in running.get("running") or []:
            upstream = item.get("model")
            if upstream:
                client = self.state.client_name(upstream)
                status[client] = item.get("state") or "ready"
                self._expiry(client, item.get("ttl"))
        now = time.monotonic()
        reported: dict[str, ModelState | None] = {}
        for client, value in status.items():
            ms = self.state.model(client)
            if value in ("ready", "loaded"):
                reported[client] = ms
                ms.observe("loaded", self.since)
            elif value in ("starting", "loading"):
                reported[client] = ms
                if ms.observe("loading", self.since):
                    ms.load_started = ms.load_started or now
        self._mark(reported, now)

    def _expiry(self, model: str, ttl: Any) -> None:
        """llama-swap unloads a model ``ttl`` s after its last request: while it is busy the
        expiry moves on; once idle it stays (to within one refresh interval)."""
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
            return
        ms = self.state.model(model)
        if ms.in_flight > 0 or ms.expires_at is None:
            ms.expires_at = time.time() + ttl

    async def load(
        self, model: str, keep_alive: Any = None, for_embedding: bool | None = None
    ) -> None:
        # any /upstream/<model>/ path makes llama-swap start that model and wait until ready
        async with self.session.get(
            f"{self.base}/upstream/{self.state.upstream_name(model)}/health",
            headers=self.headers(),
            timeout=self.load_timeout,
        ) as resp:
            await resp.read()
            if resp.status >= 500:
                raise BackendError(f"{self.state.name}: load {model} -> {resp.status}", resp.status)

    async def unload(self, model: str) -> None:
        await self._json("POST", f"/api/models/unload/{self.state.upstream_name(model)}")

    async def describe(self, model: str) -> ModelFacts | None:
        # /upstream/<model>/... would start the model: ask its llama-server only when loaded
        meta = await self._meta(model)
        props = None
        ms = self.state.models.get(model)
        if ms is not None and ms.status == "loaded":
            upstream = quote(self.state.upstream_name(model), safe="")
            props = await self._json("GET", f"/upstream/{upstream}/props")
        if props is None and meta is None:
            return None
        return facts_from(props if isinstance(props, dict) else None, meta)


class LlamaServerAdapter(Adapter):
    """llama-server in router mode (``GET /models``) or with one model (``GET /v1/models``)."""

    health_path = "/health"

    async def probe(self) -> bool:
        async with self.session.get(
            self.base + self.health_path, headers=self.headers(), timeout=self.timeout
        ) as resp:
            await resp.read()
            return resp.status < 500 or resp.status == 503  # 503 = "Loading model": alive

    async def _refresh(self) -> None:
        if self.state.mode != "single":
            try:
                listing = await self._json("GET", "/models")
            except (BackendError, aiohttp.ContentTypeError, ValueError):
                listing = None
            if isinstance(listing, dict) and _has_status(listing.get("data")):
                self.state.mode = "router"
                self._apply(listing["data"])
                return
        listing = await self._json("GET", "/v1/models")
        self.state.mode = "single"
        items = listing.get("data") or listing.get("models") or []
        self._apply(items, single=True)

    def _apply(self, items: list[dict[str, Any]], single: bool = False) -> None:
        now = time.monotonic()
        learned: dict[str, str] = {}
        reported: dict[str, ModelState | None] = {}
        for item in items:
            upstream = item.get("id") or item.get("model") or item.get("name")
            if not upstream:
                continue
            client = self.state.client_name(upstream)
            learned[client] = upstream
            ms = self.state.model(client)
            meta = item.get("meta")
            if single:
                value = "loaded" if meta is not None or "meta" not in item else "loading"
            else:
                value = (item.get("status") or {}).get("value", "unloaded")
            if isinstance(meta, dict) and meta.get("size") and not ms.size_mb:
                ms.size_mb = int(meta["size"]) // MIB
            if isinstance(meta, dict) and meta.get("n_ctx"):
                ms.context_length = int(meta["n_ctx"])
            _learn_details(ms, meta)
            if value == "loaded":
                reported[client] = ms
                ms.observe("loaded", self.since)
            elif value == "loading":
                reported[client] = ms
                if ms.observe("loading", self.since):
                    ms.load_started = ms.load_started or now
        self.state.learned = learned
        self._mark(reported, now)

    async def load(
        self, model: str, keep_alive: Any = None, for_embedding: bool | None = None
    ) -> None:
        """Load ``model`` and return once it is ready to serve (see ``_settled``)."""
        if self.state.mode != "router":
            await super().load(model)
        upstream = self.state.upstream_name(model)
        try:
            await self._json("POST", "/models/load", {"model": upstream}, self.load_timeout)
        except BackendError as exc:
            # the model was started between two polls (a request sent to llama-server
            # directly autoloads it): what the load asked for is there, or on its way
            if exc.status != 400 or "already running" not in exc.detail:
                raise
        await self._settled(model, upstream, loaded=True)

    async def unload(self, model: str) -> None:
        """Unload ``model`` and return once it has stopped (see ``_settled``)."""
        if self.state.mode != "router":
            await super().unload(model)
        upstream = self.state.upstream_name(model)
        try:
            await self._json("POST", "/models/unload", {"model": upstream})
        except BackendError as exc:
            # not running: what the unload asked for is already so (Ollama and llama-swap
            # answer such an unload with success too)
            if exc.status != 400 or "not running" not in exc.detail:
                raise
        await self._settled(model, upstream, loaded=False)

    async def _settled(self, model: str, upstream: str, loaded: bool) -> None:
        """Wait for ``/models`` to show the model loaded (``loaded``) or stopped.

        llama-server's router answers ``POST /models/load`` once it has spawned the model's
        process, while the listing still says ``loading``, and ``/models/unload`` while it
        still says ``loaded``. A load that dies ends ``unloaded`` with ``failed`` and its
        exit code: a BackendError naming it.
        """
        deadline = time.monotonic() + (self.load_timeout.total or 300.0)
        while True:
            listing = await self._json("GET", "/models")
            items = listing.get("data") if isinstance(listing, dict) else None
            item = next((i for i in items or [] if i.get("id") == upstream), None)
            status = (item or {}).get("status") or {}
            value = status.get("value")
            if loaded and value == "loaded":
                return
            if loaded and value != "loading":
                why = f"exit code {status['exit_code']}" if "exit_code" in status else "stopped"
                detail = f"llama-server did not load {model} ({why})"
                raise BackendError(f"{self.state.name}: {detail}", 500, detail)
            if not loaded and value not in ("loaded", "loading"):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.state.name}: {model} still {value} after the timeout")
            await asyncio.sleep(LOAD_POLL_S)

    async def describe(self, model: str) -> ModelFacts | None:
        if self.state.mode == "router":
            ms = self.state.models.get(model)
            if ms is None or ms.status != "loaded":
                return None  # /props?model= would autoload it
            upstream = quote(self.state.upstream_name(model), safe="")
            props = await self._json("GET", f"/props?model={upstream}")
            meta = await self._meta(model)  # the listing starts nothing
            return facts_from(props if isinstance(props, dict) else None, meta)
        props = await self._json("GET", "/props")
        return facts_from(props if isinstance(props, dict) else None, await self._meta(model))


class OpenAIAdapter(Adapter):
    """Any OpenAI-compatible server: every model it lists counts as resident."""

    health_path = "/v1/models"

    async def _refresh(self) -> None:
        listing = await self._json("GET", "/v1/models")
        now = time.monotonic()
        learned: dict[str, str] = {}
        reported: dict[str, ModelState | None] = {}
        for item in listing.get("data") or []:
            upstream = item.get("id")
            if upstream:
                client = self.state.client_name(upstream)
                learned[client] = upstream
                reported[client] = ms = self.state.model(client)
                ms.observe("loaded", self.since)
        for entry in self.state.config.models:
            reported[entry.name] = ms = self.state.model(entry.name)
            ms.observe("loaded", self.since)
        self.state.learned = learned
        self._mark(reported, now)


ADAPTERS: dict[str, type[Adapter]] = {
    "ollama": OllamaAdapter,
    "llama-swap": LlamaSwapAdapter,
    "llama-server": LlamaServerAdapter,
    "openai": OpenAIAdapter,
}


def adapter_for(
    state: BackendState,
    session: aiohttp.ClientSession,
    timeout_s: float = 5.0,
    load_timeout_s: float = 300.0,
) -> Adapter:
    return ADAPTERS[state.kind](state, session, timeout_s, load_timeout_s)


def _error_message(raw: bytes) -> str:
    """The message in an Ollama (``{"error": "..."}``) or OpenAI error body, else the text."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200]
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)[:200]
        if err:
            return str(err)[:200]
    return str(obj)[:200]


def _router_loading(ms: ModelState) -> bool:
    """The router's own bookkeeping marked the model loading (``set_status`` stamps both
    times at once); a load seen by a poll starts after the last change the router made."""
    return ms.status == "loading" and (ms.load_started or 0.0) <= ms.changed_at


def _has_status(items: Any) -> bool:
    return isinstance(items, list) and any(isinstance(i, dict) and "status" in i for i in items)


def _http_date(value: str | None) -> float | None:
    """An HTTP ``Date`` header as a Unix timestamp (whole seconds), None if absent or odd."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


CLOCK_SKEW_MIN_S = 2.0  # a Date header has whole seconds: below this, trust the clocks agree


def _clock_skew(backend_now: float | None, asked: float, answered: float) -> float:
    """How far the backend's clock runs ahead of ours (negative: behind), from the ``Date`` of
    an answer we asked for at ``asked`` and got at ``answered``; 0 when it cannot tell or the
    clocks agree to within the header's one-second resolution.

    Example: ``_clock_skew(1000.0, 4600.2, 4600.4)`` is -3599.8 (an hour behind, give or take
    the half second the header cannot show).
    """
    if backend_now is None:
        return 0.0
    skew = backend_now + 0.5 - (asked + answered) / 2  # the header is truncated to a second
    return skew if abs(skew) >= CLOCK_SKEW_MIN_S else 0.0


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: Any) -> float | None:
    """Ollama's RFC 3339 times (nanosecond fractions) as a Unix timestamp."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(
            _FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
        ).timestamp()
    except ValueError:
        return None
