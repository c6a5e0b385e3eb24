"""FleetState.view reuses each backend's view until something the policy sees changes."""

from __future__ import annotations

import time

import pytest

from modelfleet.router.config import RouterConfig
from modelfleet.router.state import FleetState


def fleet() -> FleetState:
    backends = [
        {"name": name, "url": f"http://{name}:11434", "vram_mb": 24000, "models": [{"name": "m"}]}
        for name in ("a", "b")
    ]
    state = FleetState(RouterConfig.model_validate({"backends": backends}))
    for backend in state.backends.values():
        backend.model("m").status = "loaded"
    return state


def test_an_unchanged_backend_keeps_its_view_and_a_changed_one_is_rebuilt():
    state, now = fleet(), time.monotonic()
    first = state.view(now)
    state.backends["a"].model("m").in_flight += 1
    second = state.view(now)
    assert second.backends[1] is first.backends[1]  # b: nothing changed, reused
    assert second.backends[0] is not first.backends[0]
    resident = second.backends[0].resident("m")
    assert resident is not None and resident.in_flight == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda s: setattr(s.backends["a"].model("m"), "status", "cold"),
        lambda s: setattr(s.backends["a"].model("m"), "pinned", True),
        lambda s: setattr(s.backends["a"].model("m"), "vram_mb", 100),
        lambda s: setattr(s.backends["a"].model("m"), "last_used", 5.0),
        lambda s: setattr(s.backends["a"], "healthy", False),
        lambda s: setattr(s.backends["a"], "drained", True),
        lambda s: setattr(s.backends["a"], "mode", "single"),
        lambda s: s.backends["a"].model("m").observe("loading", report_started=1e18),
        lambda s: s.backends["a"].model("new"),  # a model it learned of: still cold
    ],
)
def test_every_change_the_policy_sees_shows_in_the_next_view(change):
    state, now = fleet(), time.monotonic()
    state.view(now)  # builds and caches every backend's view
    change(state)
    after = state.view(now).backends[0]
    rebuilt = state._backend_view(state.backends["a"], now)
    assert after == rebuilt  # the cached view is what a fresh build gives


def test_a_backend_with_recent_failures_is_rebuilt_every_time():
    state, now = fleet(), time.monotonic()
    backend = state.backends["a"]
    backend.record_failure(now, "5xx")
    backend.record_success(now)
    assert state.view(now).backends[0].error_score == pytest.approx(0.5)
    backend.record_success(now)  # no setattr: the score still moves
    assert state.view(now).backends[0].error_score == pytest.approx(1 / 3)
