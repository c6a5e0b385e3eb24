"""Routing engine v2 decisions: bounded hold before a costly eviction, scale-out only on
observed service times and only when it is worth it, placement aware of pending loads."""

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

A, B = "gpu-a", "gpu-b"


def backend(name: str, *residents: Residency) -> BackendView:
    return BackendView(name=name, host=name, residents=residents)


def fleet(*backends: BackendView, vram: int = 24_000, **kw) -> FleetView:
    return FleetView(backends, hosts={b.host: HostView(b.host, vram) for b in backends}, **kw)


def decide(view: FleetView, waited_s: float = 0.0, size: int = 20_000, **params):
    policy = Policy(PolicyParams(**params))
    return policy.decide(view, Request("new", size, waited_s), now=100.0)


# -- hold before an eviction that loses more than the load gains -------------------------

# A: a hot idle model (the only evictable one now). B: a cold model, busy with one request.
HOT_IDLE_COLD_BUSY = fleet(
    backend(A, Residency("hot", size_mb=20_000)),
    backend(B, Residency("cold", size_mb=20_000, in_flight=1)),
    demand={"hot": 0.3, "cold": 0.001, "new": 0.01},
    load_s={"new": 40.0},
)


def test_costly_eviction_holds_while_a_busy_host_could_free_cheaper_room():
    d = decide(HOT_IDLE_COLD_BUSY, waited_s=4.0, max_hold_s=30.0)
    assert (d.action, d.reason, d.backend) == ("wait", "hold-evict", A)
    assert d.wait_s == pytest.approx(26.0)  # the hold is bounded: 30 s from arrival


def test_a_hold_never_outlasts_the_models_own_load_time():
    quick = FleetView(
        HOT_IDLE_COLD_BUSY.backends,
        HOT_IDLE_COLD_BUSY.hosts,
        demand=HOT_IDLE_COLD_BUSY.demand,
        load_s={"new": 8.0},
    )
    assert decide(quick, waited_s=4.0, max_hold_s=30.0).wait_s == pytest.approx(4.0)
    assert decide(quick, waited_s=8.0, max_hold_s=30.0).reason == "load-evict"


def test_hold_ends_at_max_hold_and_the_load_goes_ahead():
    d = decide(HOT_IDLE_COLD_BUSY, waited_s=30.0, max_hold_s=30.0)
    assert (d.action, d.reason, d.evict) == ("load", "load-evict", ((A, "hot"),))


def test_max_hold_zero_never_holds():
    d = decide(HOT_IDLE_COLD_BUSY, max_hold_s=0.0)
    assert (d.action, d.reason) == ("load", "load-evict")


def test_a_model_still_loading_counts_as_cheaper_room_once_idle():
    # B is loading a cold model (loaded for one request, it will be the cheapest victim);
    # evicting the hot idle model on A now would cost 300x more: hold for B instead
    view = fleet(
        backend(A, Residency("hot", size_mb=20_000)),
        backend(B, Residency("cold", state="loading", size_mb=20_000, in_flight=1)),
        demand={"hot": 0.3, "cold": 0.001, "new": 0.01},
        load_s={"new": 40.0},
    )
    d = decide(view, max_hold_s=30.0)
    assert (d.action, d.reason, d.backend) == ("wait", "hold-evict", A)
    # the hold is bounded: when it runs out the hot model goes after all
    d = decide(view, waited_s=30.0, max_hold_s=30.0)
    assert (d.action, d.reason, d.evict) == ("load", "load-evict", ((A, "hot"),))


def test_no_hold_when_waiting_cannot_offer_cheaper_room():
    # nothing is busy: holding would only delay the same eviction
    view = fleet(
        backend(A, Residency("hot", size_mb=20_000)),
        backend(B, Residency("warm", size_mb=20_000)),
        demand={"hot": 0.3, "warm": 0.2, "new": 0.01},
    )
    d = decide(view, max_hold_s=30.0)
    assert (d.action, d.reason, d.evict) == ("load", "load-evict", ((B, "warm"),))


def test_no_hold_when_the_request_brings_more_demand_than_the_victim():
    view = fleet(
        backend(A, Residency("cool", size_mb=20_000)),
        backend(B, Residency("cold", size_mb=20_000, in_flight=1)),
        demand={"cool": 0.05, "cold": 0.0, "new": 0.2},
    )
    d = decide(view, max_hold_s=30.0)
    assert (d.action, d.reason, d.evict) == ("load", "load-evict", ((A, "cool"),))


# -- wait for the host's loader before evicting -------------------------------------------

# A is loading "other" (a backend loads one model at a time); "idle" is the cheapest victim,
# and "new" brings more demand than it, so nothing argues for a hold.
LOADING_HOST = fleet(
    backend(A, Residency("other", state="loading", size_mb=4_000, in_flight=1),
            Residency("idle", size_mb=20_000)),
    vram=30_000,
    demand={"idle": 0.01, "new": 0.05},
    load_s={"other": 12.0},
)  # fmt: skip


def test_an_eviction_waits_while_its_host_is_still_loading_another_model():
    d = decide(LOADING_HOST, max_hold_s=20.0)
    assert (d.action, d.reason, d.backend, d.evict) == ("wait", "wait-loader", A, ())
    assert d.wait_s == pytest.approx(12.0)  # decided again when that load should be over
    # never past max_hold_s from arrival: then the eviction goes ahead
    assert decide(LOADING_HOST, waited_s=15.0, max_hold_s=20.0).wait_s == pytest.approx(5.0)
    d = decide(LOADING_HOST, waited_s=20.0, max_hold_s=20.0)
    assert (d.action, d.reason, d.evict) == ("load", "load-evict", ((A, "idle"),))


def test_no_wait_for_the_loader_when_nothing_is_evicted_or_nothing_loads():
    roomy = FleetView(LOADING_HOST.backends, {A: HostView(A, 50_000)}, LOADING_HOST.demand)
    assert decide(roomy, max_hold_s=20.0).reason == "load-fits"  # queues behind it, no loss
    settled = fleet(backend(A, Residency("idle", size_mb=20_000)), demand={"new": 0.05})
    assert decide(settled, max_hold_s=20.0).reason == "load-evict"


# -- scale-out ----------------------------------------------------------------------------


def busy_copy(**kw) -> FleetView:
    """``m`` resident on A with its only slot busy and 5 queued; B holds ``other``."""
    return fleet(
        backend(A, Residency("m", size_mb=4_000, in_flight=1)),
        backend(B, Residency("other", size_mb=kw.pop("other_mb", 4_000))),
        queued={"m": 5},
        load_s={"m": 3.0},
        **kw,
    )


def scale(view: FleetView):
    return Policy().decide(view, Request("m", 4_000), now=100.0)


def test_no_scale_out_on_a_default_service_time():
    # 6 x 5 s default > the 3 s load, but no request of m has finished yet: just wait
    d = scale(busy_copy())
    assert (d.action, d.reason, d.backend) == ("wait", "wait-slot", A)


def test_scale_out_into_free_vram_on_an_observed_service_time():
    d = scale(busy_copy(service_s={"m": 2.0}))
    assert (d.action, d.reason, d.backend, d.evict) == ("load", "scale-out", B, ())


def test_scale_out_never_evicts_a_model_worth_more_than_the_queue_time_it_saves():
    # B is full of a model in demand: 5 queued + 0.1 req/s x 9 s saved = 5.9 < 8 req/s lost
    view = busy_copy(service_s={"m": 2.0}, other_mb=22_000, demand={"other": 8.0, "m": 0.1})
    d = scale(view)
    assert (d.action, d.reason) == ("wait", "wait-slot")


def test_scale_out_may_evict_an_idle_cold_model():
    view = busy_copy(service_s={"m": 2.0}, other_mb=22_000, demand={"other": 0.01, "m": 0.1})
    d = scale(view)
    assert (d.action, d.reason, d.evict) == ("load", "scale-out", ((B, "other"),))


# -- loads already pending on a host ------------------------------------------------------


def test_equal_evictions_go_to_the_host_without_loads_pending():
    # both hosts can make room by evicting an equally cold model; A is already loading one
    view = fleet(
        backend(A, Residency("a-old", size_mb=10_000), Residency("busy", state="loading",
                                                                  size_mb=10_000)),
        backend(B, Residency("b-old", size_mb=14_000), Residency("b-hot", size_mb=6_000,
                                                                  in_flight=1)),
        demand={"a-old": 0.0, "b-old": 0.0},
        load_s={"busy": 20.0},
    )  # fmt: skip
    d = decide(view, size=10_000)
    assert (d.reason, d.backend, d.evict) == ("load-evict", B, ((B, "b-old"),))
