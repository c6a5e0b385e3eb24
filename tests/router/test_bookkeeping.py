"""The pure bookkeeping (router/bookkeeping.py), with time passed in: queue, late binding,
slots, residency transitions, keep-alive expiry and what it learns."""

from __future__ import annotations

import pytest

from modelfleet.router.bookkeeping import Arrival, Bookkeeping, Bound, Lease, Ticket
from modelfleet.router.config import BackendConfig, ModelEntry, RouterConfig
from modelfleet.router.policy import Decision, Policy, PolicyParams
from modelfleet.router.state import FleetState

SIZES = {"small": 4_000, "mid": 12_000, "big": 20_000, "hot": 20_000, "new": 20_000}


def books(*hosts: str, slots: int = 1, vram_mb: int = 24_000) -> Bookkeeping:
    config = RouterConfig(
        backends=[
            BackendConfig(
                name=host,
                url=f"http://127.0.0.{i + 1}:11434",
                host=host,
                vram_mb=vram_mb,
                slots=slots,
                models=[ModelEntry(name=m, size_mb=size) for m, size in SIZES.items()],
            )
            for i, host in enumerate(hosts)
        ]
    )
    return Bookkeeping(FleetState(config), Policy(PolicyParams(max_hold_s=30.0)))


def status(b: Bookkeeping, backend: str, model: str) -> str:
    return b.fleet.backends[backend].model(model).status


def decided(step: Arrival | Bound) -> Decision:
    """The policy's answer, which this step must have had."""
    assert step.decision is not None
    return step.decision


def leased(step: Arrival | Bound) -> Lease:
    """The slot this step was bound to, which it must have been."""
    assert step.lease is not None
    return step.lease


def test_queue_is_fifo_and_binds_late_when_the_slot_frees():
    b = books("a")
    first = b.arrive(Ticket("small", since=0.0), now=0.0)
    assert (first.outcome, decided(first).reason) == ("bound", "load-fits")
    assert status(b, "a", "small") == "loading"
    second = b.arrive(Ticket("small", since=1.0), now=1.0)
    assert (second.outcome, decided(second).reason) == ("queued", "wait-load")
    third = b.arrive(Ticket("small", since=2.0), now=2.0)
    assert (third.outcome, third.decision) == ("queued", None)  # behind others: not asked
    assert b.fleet.queued == {"small": 2}

    b.ready(leased(first), now=5.0)
    assert status(b, "a", "small") == "loaded"
    assert b.fleet.load_s["small"] == 5.0  # from bind to first byte
    assert b.kick(now=5.0) == []  # the one slot is still taken
    b.release(leased(first), now=7.0, ok=True)
    assert b.fleet.service_s["small"] == 2.0  # from when the model was ready, not from bind

    handed = b.kick(now=7.0)
    assert [(h.ticket.since, h.decision.reason) for h in handed] == [(1.0, "resident")]
    assert leased(handed[0]).queued_s == 6.0
    assert b.fleet.queued == {"small": 1}


def test_a_retry_goes_to_the_front_of_its_queue():
    b = books("a")
    b.arrive(Ticket("small", since=0.0), now=0.0)
    b.arrive(Ticket("small", since=1.0), now=1.0)
    retry = Ticket("small", since=0.5, attempt=1)
    assert b.arrive(retry, now=2.0).outcome == "queued"
    assert b.queues["small"][0] is retry


def test_a_full_queue_refuses_with_the_policy_answer_for_retry_after():
    b = books("a")
    b.arrive(Ticket("small", since=0.0), now=0.0)
    b.arrive(Ticket("small", since=1.0), now=1.0, limit=1)
    full = b.arrive(Ticket("small", since=2.0), now=2.0, limit=1)
    assert full.outcome == "full" and full.decision is not None
    assert b.fleet.queued == {"small": 1}


def test_withdrawn_tickets_leave_the_queue_and_its_count():
    b = books("a")
    b.arrive(Ticket("small", since=0.0), now=0.0)
    gone = Ticket("small", since=1.0)
    b.arrive(gone, now=1.0)
    b.withdraw(gone)
    assert b.fleet.queued == {} and b.queues == {}


def test_victims_are_cold_from_the_moment_the_load_is_bound():
    b = books("a")
    big = leased(b.arrive(Ticket("big", since=0.0), now=0.0))
    b.ready(big, now=10.0)
    b.release(big, now=11.0, ok=True)
    mid = b.arrive(Ticket("mid", since=20.0), now=20.0)
    assert (decided(mid).reason, decided(mid).evict) == ("load-evict", (("a", "big"),))
    assert (status(b, "a", "big"), status(b, "a", "mid")) == ("cold", "loading")


def test_load_time_counts_from_when_the_backend_began_loading_when_that_is_known():
    b = books("a")
    lease = leased(b.arrive(Ticket("small", since=0.0), now=0.0))
    b.load_began(lease.backend, "small", now=3.0)  # it queued behind another load until 3 s
    b.loaded(lease.backend, "small", now=8.0)
    assert b.fleet.load_s["small"] == 5.0


def test_a_load_that_failed_before_its_first_byte_is_cold_again():
    b = books("a")
    lease = leased(b.arrive(Ticket("small", since=0.0), now=0.0))
    b.release(lease, now=1.0, ok=False)
    assert status(b, "a", "small") == "cold"
    assert "small" not in b.fleet.service_s


@pytest.mark.parametrize(
    ("unload_at", "in_flight", "expired"),
    [(50.0, 0, [("a", "small")]), (50.0, 1, []), (70.0, 0, []), (None, 0, [])],
)
def test_keep_alive_expires_idle_loaded_models_only(unload_at, in_flight, expired):
    b = books("a")
    ms = b.fleet.backends["a"].model("small")
    ms.status, ms.unload_at, ms.in_flight = "loaded", unload_at, in_flight
    assert b.expire_keep_alive(now=60.0) == expired
    assert ms.status == ("cold" if expired else "loaded")


def test_an_eviction_waits_for_the_hosts_load_under_way_and_binds_when_it_ends():
    b = books("a", vram_mb=30_000)
    first = b.arrive(Ticket("small", since=0.0), now=0.0)  # a load under way on a
    assert (first.outcome, decided(first).reason) == ("bound", "load-fits")
    idle = b.fleet.backends["a"].model("mid")
    idle.status = "loaded"  # 4 + 12 GB used: "new" (20 GB) needs mid gone
    b.fleet.demand.record("new", 1.0)
    waiting = b.arrive(Ticket("new", since=1.0), now=1.0)
    assert (waiting.outcome, decided(waiting).reason) == ("queued", "wait-loader")
    assert status(b, "a", "mid") == "loaded"  # still there, still serving
    assert b.take_wakeups() == [11.0]  # default_load_s 10: when small should be loaded
    b.loaded(b.fleet.backends["a"], "small", now=4.0)
    (bound,) = b.kick(now=4.0)
    assert (bound.decision.reason, bound.decision.evict) == ("load-evict", (("a", "mid"),))
    assert status(b, "a", "mid") == "cold"


def test_a_held_request_asks_for_a_wakeup_and_loads_when_its_hold_runs_out():
    b = books("a", "b")
    hot = b.fleet.backends["a"].model("hot")
    hot.status = "loaded"
    busy = b.fleet.backends["b"].model("big")
    busy.status, busy.in_flight = "loaded", 1  # cheap to evict, once it is idle
    for t in range(5):
        b.fleet.demand.record("hot", float(t))
    held = b.arrive(Ticket("new", since=100.0), now=100.0)
    assert (held.outcome, decided(held).reason) == ("queued", "hold-evict")
    assert b.take_wakeups() == [110.0]  # default_load_s 10 < max_hold_s 30
    assert b.take_wakeups() == []
    assert b.kick(now=105.0) == []
    (bound,) = b.kick(now=110.0)
    assert (bound.decision.reason, bound.decision.evict) == ("load-evict", (("a", "hot"),))


def test_a_load_lost_to_another_replica_is_undone_and_joins_the_winners_load():
    # a holds hot (idle): loading new there evicts it. Another replica won new's load lease
    # on b (router/shared.py): nothing was sent, so hot is still loaded on a and the request
    # joins the load on b instead.
    b = books("a", "b", vram_mb=24_000)
    a_hot = b.fleet.backends["a"].model("hot")
    b.set_status(a_hot, "loaded", 0.0)
    b_mid = b.fleet.backends["b"].model("mid")
    b.set_status(b_mid, "loaded", 0.0)
    b_mid.in_flight = 1  # b is busy: the policy evicts on a
    arrived = b.arrive(Ticket("new", since=1.0), now=1.0)
    assert arrived.lease is not None and arrived.decision is not None
    assert arrived.decision.backend == "a" and arrived.decision.evict == (("a", "hot"),)
    assert (status(b, "a", "new"), status(b, "a", "hot")) == ("loading", "cold")

    b.join_elsewhere(arrived.lease, b.fleet.backends["b"], now=1.05)
    assert (status(b, "a", "new"), status(b, "a", "hot")) == ("cold", "loaded")
    assert status(b, "b", "new") == "loading"
    assert b.fleet.backends["a"].model("new").in_flight == 0
    assert b.fleet.backends["b"].model("new").in_flight == 1
    assert arrived.lease.backend.name == "b" and arrived.lease.reason == "join-load"
    # the next request for it joins the same load
    second = b.arrive(Ticket("new", since=1.1), now=1.1)
    assert second.decision is not None and second.decision.reason in ("join-load", "wait-load")
    assert second.decision.backend == "b"


def test_a_remote_load_mark_makes_requests_join_it():
    b = books("a", "b")
    b.load_elsewhere(b.fleet.backends["b"], "small", now=0.0)
    assert status(b, "b", "small") == "loading"
    arrived = b.arrive(Ticket("small", since=0.0), now=0.0)
    assert arrived.decision is not None
    assert (arrived.decision.reason, arrived.decision.backend) == ("join-load", "b")
