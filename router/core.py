"""The ``Router``: state, scheduler, adapters and the HTTP session, held by the aiohttp app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from modelfleet.router.accesslog import AccessLog
from modelfleet.router.backends import Adapter, BackendError, adapter_for
from modelfleet.router.config import ConfigError, RouterConfig, load_config
from modelfleet.router.metrics import Metrics
from modelfleet.router.policy import Decision, Policy, PolicyParams
from modelfleet.router.scheduler import Scheduler
from modelfleet.router.state import BackendState, ErrorRate, FleetState

if TYPE_CHECKING:
    from modelfleet.router.shared import SharedState

log = logging.getLogger("modelfleet.router")
AFTER_REQUEST_S = 0.25  # debounce: one after-request refresh per backend per this interval


def policy_for(config: RouterConfig) -> Policy:
    p = config.policy
    return Policy(
        PolicyParams(
            headroom_mb=p.headroom_mb,
            default_load_s=p.default_load_s,
            default_service_s=p.default_service_s,
            scale_out=p.scale_out,
            allow_spill=p.allow_spill,
            max_hold_s=p.max_hold_s,
        )
    )


class Router:
    def __init__(self, config: RouterConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.fleet = FleetState(config)
        self.metrics = Metrics(shared_state=config.shared_state is not None)
        self.access_log = AccessLog(config.access_log)
        self.scheduler = Scheduler(
            self.fleet,
            policy_for(config),
            self.unload,
            on_decision=self._on_decision,
            on_load=self._on_load,
        )
        self.session: aiohttp.ClientSession | None = None
        self.admin_token = config.admin_secret()
        self.client_keys = config.client_keys()
        self.started = time.time()
        self.background: set[asyncio.Future[Any]] = set()
        self._refreshing: set[str] = set()
        self.error_rates: dict[str, ErrorRate] = {}  # per backend, see router/health.py
        self.shared: SharedState | None = None
        self.stopping = False  # SIGTERM: serve what was accepted, then close (router/__main__.py)
        if config.shared_state is not None:
            # imported here: a single router never loads the Redis client
            try:
                from modelfleet.router.shared import SharedState
            except ImportError as exc:
                raise ConfigError(
                    f"shared_state: needs the Python package {exc.name!r} (pip install redis)"
                ) from None

            self.shared = SharedState(
                config.shared_state,
                self.scheduler.books,
                self.scheduler.kick,
                self.spawn,
                self.metrics.shared_state_connected,
            )
        self.scheduler.shared = self.shared

    @property
    def shared_mode(self) -> str:
        """``off`` (no shared_state), ``connected`` or ``degraded`` (Redis away: alone)."""
        return "off" if self.shared is None else self.shared.mode

    # -- backends ---------------------------------------------------------------------------

    def http(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise RuntimeError("the router's HTTP session is not open (app not started)")
        return self.session

    def adapter(self, state: BackendState) -> Adapter:
        cfg = self.config
        return adapter_for(state, self.http(), cfg.health.timeout_s, cfg.load_timeout_s)

    async def unload(self, backend: str, model: str) -> None:
        state = self.fleet.backends.get(backend)
        if state is None:
            return
        if self.shared is not None:
            self.shared.publish("evict", backend, model)
        try:
            await self.adapter(state).unload(model)
            self.metrics.evictions.labels(backend, model).inc()
        except (BackendError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("unload of %s on %s failed: %s", model, backend, exc)
        finally:
            asyncio.get_running_loop().call_soon(self._schedule_refresh, state)

    def set_pinned(self, state: BackendState, model: str, pinned: bool) -> None:
        """A router-kept pin (``keep_alive < 0`` where the backend has no keep-alive of its
        own): never an eviction victim. Replicas share it (in the background)."""
        ms = state.model(model)
        if ms.pinned == pinned:
            return
        ms.pinned = pinned
        if self.shared is not None:  # while Redis is away it is kept and shared on return
            self.spawn(self.shared.set_pinned(state.name, model, pinned))

    def _schedule_refresh(self, state: BackendState) -> None:
        self.spawn(self.refresh(state))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run in the background, keeping a reference so the task is not collected early."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def refresh(self, state: BackendState) -> bool:
        """Poll one backend's residency; False when it did not answer."""
        state.last_refresh = time.monotonic()
        try:
            await self.adapter(state).refresh()
        except (BackendError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            state.last_error = f"refresh: {exc}" if str(exc) else f"refresh: {type(exc).__name__}"
            return False
        finally:
            self.scheduler.kick()
        return True

    def refresh_soon(self, state: BackendState) -> None:
        """Re-read a backend's residency after a request, at most every ``AFTER_REQUEST_S``."""
        now = time.monotonic()
        if state.name in self._refreshing or now - state.last_refresh < AFTER_REQUEST_S:
            return
        state.last_refresh = now
        self._refreshing.add(state.name)

        async def run() -> None:
            try:
                await self.refresh(state)
            finally:
                self._refreshing.discard(state.name)

        self.spawn(run())

    async def refresh_all(self) -> None:
        await asyncio.gather(*(self.refresh(s) for s in list(self.fleet.backends.values())))

    # -- config reload ----------------------------------------------------------------------

    def reload(self, config: RouterConfig | None = None) -> RouterConfig:
        """Adopt a new config (re-read from disk when none is given); requests keep running."""
        if config is None:
            if self.config_path is None:
                raise ValueError("the router was started without a config file to re-read")
            config = load_config(self.config_path)
        # everything that can fail comes first, so a bad config changes nothing
        admin_token, client_keys = config.admin_secret(), config.client_keys()
        new_log = (
            AccessLog(config.access_log) if config.access_log != self.access_log.target else None
        )
        self.config = config
        self.fleet.apply_config(config)
        self.scheduler.policy = policy_for(config)
        self.admin_token, self.client_keys = admin_token, client_keys
        if new_log is not None:
            self.access_log.close()
            self.access_log = new_log
        self.scheduler.kick()
        return config

    # -- metrics hooks ----------------------------------------------------------------------

    def _on_decision(self, model: str, decision: Decision) -> None:
        backend = decision.backend or ""
        self.metrics.decisions.labels(backend, model, decision.reason).inc()

    def _on_load(self, backend: str, model: str, reason: str) -> None:
        self.metrics.loads.labels(backend, model, reason).inc()

    def record_failure(self, state: BackendState, kind: str) -> None:
        """A passive signal: 5xx, connection error or stall. Enough in a row ejects it."""
        now = time.monotonic()
        state.record_failure(now, kind)
        state.consecutive_successes = 0
        state.consecutive_failures += 1
        self.metrics.backend_failures.labels(state.name, kind).inc()
        if state.healthy and state.consecutive_failures >= self.config.health.fail_threshold:
            state.healthy = False
            state.backoff_s = self.config.health.interval_s
            state.next_check = now + state.backoff_s
            self.metrics.backend_healthy.labels(state.name).set(0)
            log.warning("backend %s marked unhealthy after %s", state.name, kind)

    def record_success(self, state: BackendState) -> None:
        state.record_success(time.monotonic())
        if state.healthy:
            state.consecutive_failures = 0
