"""The pure routing policy, case by case (no I/O, no clock)."""

from __future__ import annotations

import pytest

from modelfleet.router.policy import (
    BackendView,
    DemandTracker,
    FleetView,
    HostView,
    Policy,
    PolicyParams,
    Request,
    Residency,
)

A, B = "gpu-a", "gpu-b"


def fleet(*backends: BackendView, vram: int = 24_000, **kw) -> FleetView:
    hosts = {b.host: HostView(b.host, vram) for b in backends}
    return FleetView(backends=tuple(backends), hosts=hosts, **kw)


def backend(name: str, *residents: Residency, **kw) -> BackendView:
    return BackendView(name=name, host=kw.pop("host", name), residents=residents, **kw)


def decide(view: FleetView, model: str = "m", size: int = 4_000, **kw):
    return Policy(kw.pop("params", None)).decide(view, Request(model, size), now=100.0, **kw)


def test_resident_with_free_slot_wins_over_idle_empty_backend():
    d = decide(fleet(backend(A), backend(B, Residency("m", size_mb=4_000, slots=2))))
    assert (d.action, d.reason, d.backend) == ("serve", "resident", B)


def test_least_busy_resident_copy_and_failures_count_as_load():
    view = fleet(
        backend(A, Residency("m", in_flight=1, slots=4)),
        backend(B, Residency("m", in_flight=0, slots=4), error_score=0.5),
    )
    # B is idle but has been failing fast: it must not look idle
    assert decide(view).backend == A


def test_join_load_under_way_instead_of_second_load():
    view = fleet(backend(A), backend(B, Residency("m", state="loading", in_flight=1, slots=2)))
    d = decide(view)
    assert (d.action, d.reason, d.backend) == ("serve", "join-load", B)


def test_load_with_no_free_slot_waits_for_it():
    view = fleet(backend(A), backend(B, Residency("m", state="loading", in_flight=1, slots=1)))
    d = decide(view)
    assert (d.action, d.reason) == ("wait", "wait-load")


def test_busy_resident_waits_when_queue_is_shorter_than_a_load():
    view = fleet(
        backend(A, Residency("m", in_flight=1, slots=1)),
        backend(B),
        load_s={"m": 30.0},
        service_s={"m": 2.0},
    )
    d = decide(view)
    assert (d.action, d.reason, d.backend) == ("wait", "wait-slot", A)


def test_busy_resident_scales_out_when_queue_wait_exceeds_load():
    view = fleet(
        backend(A, Residency("m", in_flight=1, slots=1)),
        backend(B),
        load_s={"m": 3.0},
        service_s={"m": 2.0},
        queued={"m": 5},
    )
    d = decide(view)
    assert (d.action, d.reason, d.backend) == ("load", "scale-out", B)
    assert d.wait_s == pytest.approx(12.0)


def test_scale_out_never_to_a_second_backend_on_the_same_host():
    view = fleet(
        backend("a1", Residency("m", in_flight=1), host="h"),
        backend("a2", host="h"),
        queued={"m": 50},
    )
    assert decide(view).reason == "wait-slot"


def test_scale_out_can_be_switched_off():
    view = fleet(backend(A, Residency("m", in_flight=1)), backend(B), queued={"m": 50})
    assert decide(view, params=PolicyParams(scale_out=False)).reason == "wait-slot"


def test_cold_load_goes_where_it_fits_without_eviction():
    view = fleet(
        backend(A, Residency("x", size_mb=22_000)),
        backend(B, Residency("y", size_mb=10_000)),
    )
    d = decide(view)
    assert (d.action, d.reason, d.backend, d.evict) == ("load", "load-fits", B, ())


def test_cold_load_prefers_the_host_with_most_free_vram():
    view = fleet(backend(A, Residency("x", size_mb=10_000)), backend(B))
    assert decide(view).backend == B


@pytest.mark.parametrize(
    ("size", "used_on_small", "expected"),
    [
        (4_000, 0, "small"),  # the big host stays free for a big model
        (4_000, 18_000, "small"),  # fits in the small host's 6 GB left
        (4_000, 22_000, "big"),  # does not fit there any more
        (40_000, 0, "big"),  # fits nowhere else
    ],
)
def test_cold_load_goes_to_the_smallest_host_it_fits_on(size, used_on_small, expected):
    view = FleetView(
        backends=(backend("big"), backend("small", Residency("x", size_mb=used_on_small))),
        hosts={"big": HostView("big", 80_000), "small": HostView("small", 24_000)},
    )
    d = decide(view, size=size)
    assert (d.reason, d.backend) == ("load-fits", expected)


def test_eviction_picks_the_least_demanded_victim():
    view = fleet(
        backend(A, Residency("hot", size_mb=21_000)),
        backend(B, Residency("cold", size_mb=21_000)),
        demand={"hot": 2.0, "cold": 0.01},
    )
    d = decide(view)
    assert (d.action, d.reason, d.backend, d.evict) == ("load", "load-evict", B, ((B, "cold"),))
    assert d.cost == pytest.approx(0.01)


def test_models_with_requests_in_flight_are_never_evicted():
    view = fleet(
        backend(A, Residency("x", size_mb=22_000, in_flight=1)),
        backend(B, Residency("y", size_mb=22_000, in_flight=1)),
    )
    d = decide(view)
    assert (d.action, d.reason) == ("wait", "wait-capacity")


def test_pinned_models_are_not_evicted():
    view = fleet(
        backend(A, Residency("x", size_mb=22_000, pinned=True)),
        backend(B, Residency("y", size_mb=22_000)),
    )
    assert decide(view).evict == ((B, "y"),)


def test_backends_on_one_host_share_its_vram():
    view = FleetView(
        backends=(
            backend("ollama", Residency("x", size_mb=15_000), host="h1"),
            backend("swap", host="h1"),
            backend("other", Residency("z", size_mb=1_000), host="h2"),
        ),
        hosts={"h1": HostView("h1", 24_000), "h2": HostView("h2", 24_000)},
    )
    # 10 GB does not fit next to the 15 GB model on h1, so the empty "swap" loses to h2
    assert decide(view, size=10_000).backend == "other"


def test_eviction_may_cross_backends_on_one_host():
    view = FleetView(
        backends=(
            backend("ollama", Residency("x", size_mb=15_000), host="h1"),
            backend("swap", host="h1", can_load=True),
        ),
        hosts={"h1": HostView("h1", 24_000)},
    )
    d = decide(view, size=10_000)
    assert d.reason == "load-evict"
    assert d.evict == (("ollama", "x"),)


def test_max_loaded_count_cap_forces_an_own_eviction():
    view = fleet(backend(A, Residency("x", size_mb=1), max_loaded=1), vram=0)
    d = decide(view)
    assert (d.reason, d.evict) == ("load-evict", ((A, "x"),))


def test_unknown_vram_never_limits_placement():
    view = fleet(backend(A, Residency("x", size_mb=90_000)), vram=0)
    assert decide(view, size=90_000).reason == "load-fits"


def test_spilled_copy_ranks_below_a_clean_load_that_fits():
    view = fleet(
        backend(A, Residency("m", size_mb=4_000, vram_mb=2_000)),
        backend(B),
    )
    d = decide(view)
    assert (d.reason, d.backend) == ("load-fits", B)


def test_spilled_copy_beats_evicting():
    view = fleet(
        backend(A, Residency("m", size_mb=4_000, vram_mb=2_000)),
        backend(B, Residency("y", size_mb=22_000)),
    )
    d = decide(view)
    assert (d.reason, d.backend) == ("resident-spilled", A)


def test_model_larger_than_every_host_spills_as_last_resort():
    view = fleet(backend(A), backend(B, Residency("y", size_mb=10_000)))
    d = decide(view, size=30_000)
    assert (d.reason, d.backend, d.evict) == ("load-spill", A, ())
    assert decide(view, size=30_000, params=PolicyParams(allow_spill=False)).action == "wait"


def test_a_model_one_host_can_hold_waits_for_it_rather_than_spill_onto_a_smaller_one():
    # 10 GB: the 24 GB host holds it whole once its busy model is done; the 8 GB host would
    # run it partly on the CPU for as long as it stays there
    view = FleetView(
        backends=(
            backend(A, Residency("x", size_mb=22_000, in_flight=1)),
            backend(B),
        ),
        hosts={A: HostView(A, 24_000), B: HostView(B, 8_000)},
    )
    d = decide(view, size=10_000)
    assert (d.action, d.reason, d.backend) == ("wait", "wait-capacity", A)
    # too large for the 24 GB host as well: spilling is the only way, onto the emptier host
    assert decide(view, size=30_000).reason == "load-spill"


def test_unhealthy_drained_excluded_and_unlisted_backends_are_skipped():
    res = Residency("m")
    view = fleet(
        backend("sick", res, healthy=False),
        backend("drained", res, drained=True),
        backend("failed", res),
        backend("elsewhere", serves=frozenset({"other"})),
        backend("ok"),
    )
    d = decide(view, exclude=frozenset({"failed"}))
    assert (d.action, d.backend) == ("load", "ok")


def test_no_backend_rejects():
    d = decide(fleet(backend(A, serves=frozenset({"x"}))))
    assert (d.action, d.reason) == ("reject", "no-backend")


def test_backend_that_cannot_load_only_serves_residents():
    assert decide(fleet(backend(A, can_load=False))).action == "reject"
    view = fleet(backend(A, Residency("m"), can_load=False))
    assert (decide(view).action, decide(view).backend) == ("serve", A)


@pytest.mark.parametrize(
    ("events", "at", "expected"),
    [
        ([], 0.0, 0.0),
        ([0.0], 0.0, 0.6931 / 60),
        ([0.0], 60.0, 0.6931 / 120),
    ],
)
def test_demand_tracker_decays(events, at, expected):
    demand = DemandTracker(half_life_s=60.0)
    for t in events:
        demand.record("m", t)
    assert demand.rate("m", at) == pytest.approx(expected, rel=1e-3)


def test_demand_tracker_steady_rate_converges():
    demand = DemandTracker(half_life_s=30.0)
    for i in range(3000):
        demand.record("m", i * 0.5)  # 2 req/s
    assert demand.rate("m", 1500.0) == pytest.approx(2.0, rel=0.05)
    assert demand.rates(1500.0).keys() == {"m"}
