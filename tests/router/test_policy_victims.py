"""Which victims a load evicts: the cheapest set (least recent demand) that frees enough VRAM.

Each case is one 24 GB host whose idle models fill it; the request needs ``need`` MB. The
cases are small enough to check by hand: list every victim set that frees enough and take
the one with the least demand (then fewest MB, then fewest models, then least recently used).
"""

from __future__ import annotations

import pytest

from modelfleet.router.policy import (
    BackendView,
    FleetView,
    HostView,
    Policy,
    PolicyParams,
    Request,
    Residency,
)

HOST_MB = 24_000

# (name, size_mb, demand req/s, last_used); the sizes of each case add up to HOST_MB
CASES = [
    pytest.param(
        [("a", 8_000, 0.1, 0), ("b", 4_000, 0.2, 0), ("c", 12_000, 0.25, 0)],
        10_000,
        {"c"},
        id="one-bigger-victim-beats-two-cheaper-ones",  # a+b cost 0.3, c alone 0.25
    ),
    pytest.param(
        [("small", 2_000, 0.01, 0), ("big", 20_000, 0.02, 0), ("hot", 2_000, 5.0, 0)],
        10_000,
        {"big"},
        id="no-small-victim-on-top-of-one-that-suffices",  # cheapest-first takes small too
    ),
    pytest.param(
        [("a", 5_000, 0.01, 0), ("b", 5_000, 0.01, 0), ("c", 14_000, 0.5, 0)],
        10_000,
        {"a", "b"},
        id="two-cold-victims-beat-one-hot",
    ),
    pytest.param(
        [("a", 6_000, 0.0, 0), ("b", 5_000, 0.0, 0), ("c", 5_000, 0.0, 0), ("d", 8_000, 1, 0)],
        10_000,
        {"b", "c"},
        id="equal-demand-goes-to-fewer-mb",  # a+b and a+c free 11 GB, b+c exactly 10 GB
    ),
    pytest.param(
        [("old", 12_000, 0.0, 10), ("new", 12_000, 0.0, 90)],
        10_000,
        {"old"},
        id="full-tie-goes-to-least-recently-used",
    ),
    pytest.param(
        [("a", 4_000, 0.1, 0), ("b", 4_000, 0.1, 5), ("c", 16_000, 0.3, 0)],
        4_000,
        {"a"},
        id="one-victim-when-one-is-enough",
    ),
]


@pytest.mark.parametrize(("residents", "need", "evicted"), CASES)
def test_load_evicts_the_cheapest_sufficient_set(residents, need, evicted):
    host = BackendView(
        "gpu",
        "gpu",
        residents=tuple(Residency(m, size_mb=mb, last_used=t) for m, mb, _, t in residents),
    )
    view = FleetView(
        backends=(host,),
        hosts={"gpu": HostView("gpu", HOST_MB)},
        demand={m: rate for m, _, rate, _ in residents},
    )
    d = Policy().decide(view, Request("new-model", need), now=100.0)
    assert (d.action, d.reason, d.backend) == ("load", "load-evict", "gpu")
    assert {model for _, model in d.evict} == evicted
    assert d.cost == pytest.approx(sum(rate for m, _, rate, _ in residents if m in evicted))


def test_busy_and_pinned_models_stay_even_when_cheapest():
    host = BackendView(
        "gpu",
        "gpu",
        residents=(
            Residency("busy", size_mb=12_000, in_flight=1),
            Residency("pinned", size_mb=6_000, pinned=True),
            Residency("a", size_mb=3_000),
            Residency("b", size_mb=3_000),
        ),
    )
    view = FleetView(
        backends=(host,),
        hosts={"gpu": HostView("gpu", HOST_MB)},
        demand={"busy": 0.0, "pinned": 0.0, "a": 0.5, "b": 0.4},
    )
    # (no hold: this is about which victims, not whether to wait for "busy" to finish)
    d = Policy(PolicyParams(max_hold_s=0)).decide(view, Request("new-model", 5_000), now=100.0)
    assert set(d.evict) == {("gpu", "a"), ("gpu", "b")}


def test_count_cap_evicts_the_cheapest_own_model_and_no_more():
    capped = BackendView(
        "gpu",
        "gpu",
        max_loaded=2,
        residents=(Residency("x", size_mb=1_000), Residency("y", size_mb=1_000)),
    )
    view = FleetView(
        backends=(capped,),
        hosts={"gpu": HostView("gpu", HOST_MB)},
        demand={"x": 0.5, "y": 0.1},
    )
    d = Policy().decide(view, Request("new-model", 1_000), now=100.0)
    assert (d.reason, d.evict) == ("load-evict", (("gpu", "y"),))


def test_count_cap_plus_vram_shortfall_on_one_host():
    # "ollama" is at its cap of one model: loading there must evict x (its own) and still
    # needs room, so z goes too (0.31 req/s). Loading on "swap" only needs z gone (0.01).
    view = FleetView(
        backends=(
            BackendView("ollama", "h", max_loaded=1, residents=(Residency("x", size_mb=2_000),)),
            BackendView("swap", "h", residents=(Residency("z", size_mb=20_000),)),
        ),
        hosts={"h": HostView("h", HOST_MB)},
        demand={"x": 0.3, "z": 0.01},
    )
    d = Policy().decide(view, Request("new-model", 10_000), now=100.0)
    assert (d.backend, d.evict) == ("swap", (("swap", "z"),))
    d = Policy().decide(view, Request("new-model", 10_000), now=100.0, exclude=frozenset({"swap"}))
    assert (d.backend, set(d.evict)) == ("ollama", {("ollama", "x"), ("swap", "z")})
