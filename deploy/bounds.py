"""Lower bounds on cold loads for a trace, and one reference heuristic.

Every routing result should sit next to a number no policy can beat. Three are valid here:

``first_touch``
    Every distinct model is loaded at least once.

``lp``
    The LP relaxation of offline caching with sizes, over the *pooled* problem: the whole
    fleet's VRAM as one cache and loads that take no time. Hosts only split the VRAM, and
    a model can only sit where it fits, so neither makes the pooled problem harder than
    the fleet's.

    Waiting is the part that matters. With no waits (the default) every request finds its
    model in VRAM the moment it arrives: requests are served in arrival order. No real fleet
    does that (a load takes seconds), and a schedule whose requests *wait* can make fewer
    loads than that bound: while a request waits for room, others are served, and several
    waiting requests share one load. (``a b a b a b`` a tenth of a second apart with room
    for one model: the no-wait LP says 4, the integer program 6, and the router, PolyLlama
    and round-robin each load twice: tests/unit/test_simulator.py.) So the no-wait bound
    bounds only schedules in which no request waits.

    ``waits`` (one number, or one per request) gives a bound for every schedule in which
    each request ``i`` finds its model in VRAM (loaded or loading) at some moment of its
    *window* ``[t_i, t_i + wait_i]``. A run in which request ``i`` got its first token
    ``wait_i`` seconds after it arrived is such a schedule (its model was in VRAM then), and
    so is any schedule that serves no request later than that run did. Per model, take as
    many requests as possible whose windows do not overlap (earliest window end first); call
    them openers. Each opener ``a`` is served at some ``s_a`` in its window. Between two
    openers in a row, ``a`` then ``b``, the model either stays in VRAM from ``s_a`` to ``s_b``,
    so at least over ``[t_a + wait_a, t_b]``, or it is loaded again after ``s_a`` and by
    ``s_b``; those spans do not overlap, so each such reload is a load of its own.
    Variables: one per pair of openers in a row, ``x`` in [0, 1] = how much of the model
    stays. Cold loads = distinct models + sum(1 - x). Room: at each opener, its model plus
    the kept pairs of other models whose span holds its whole window fit; at every moment
    the kept spans alone fit. With no waits every request is an opener and this is the
    no-wait program. With loads that take no time, a schedule that may wait can take turns
    in VRAM for free, so the bound falls fast as the waits grow: it is valid, and it is all
    that is proven here for a fleet whose requests wait.

    Solved with scipy's HiGHS (a few tenths of a second for the hour-long traces in
    ``bench/``).

``integer_bound``
    The same pooled problem as an integer program (each interval kept whole or not), given
    to HiGHS's branch and bound for ``node_limit`` nodes (1: the root node with its cutting
    planes, a few seconds for an hour-long trace). The *dual bound* it proves is valid at
    any node limit, and never below the LP's; it comes with the best integer schedule found
    (``schedule``: loads a pooled, zero-time fleet can achieve, so the pooled optimum lies
    between the two). Node limit, not a time limit: the result is the same on any machine.

``belady_reference``
    NOT a bound: Belady's furthest-next-use eviction on the same pooled cache. With equal
    sizes it is optimal; with unequal sizes it is only a strong heuristic, and an exact
    integer program finds schedules with fewer loads. It is kept as a reference point.

Example::

    >>> lp_bound(["a", "b", "a", "b"], {"a": 10, "b": 10}, capacity_mb=15)
    3

(a no-wait schedule needs 4 there: the LP keeps half of each model loaded between its
requests; ``integer_bound`` on the same input proves 4.) With the requests a second apart
and up to 2 s of waiting, the two ``a`` can share a load, and so can the two ``b``::

    >>> lp_bound(["a", "b", "a", "b"], {"a": 10, "b": 10}, 15, times=[0, 1, 2, 3], waits=2)
    2
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple


class BoundUnavailable(RuntimeError):
    """The LP bound cannot be computed here (scipy is not installed)."""


def first_touch(models: Sequence[str]) -> int:
    return len(set(models))


class IntegerBound(NamedTuple):
    bound: int  # proven: no schedule of the pooled problem loads fewer
    schedule: int | None  # loads of the best integer schedule found; None if none yet


class _Pooled(NamedTuple):
    """The pooled problem as ``A x <= room``, x in [0, 1] per reuse interval, maximize sum x."""

    fixed: int  # first touches: loaded whatever the schedule
    intervals: int
    matrix: Any  # scipy.sparse CSR, one row per request
    room: list[float]


def _scipy() -> Any:
    try:
        import scipy.optimize
        import scipy.sparse
    except ImportError as exc:
        raise BoundUnavailable(
            "the LP bound needs scipy: pip install 'modelfleet[simulate]'"
        ) from exc
    return scipy


def _pooled(
    models: Sequence[str],
    sizes: Mapping[str, int],
    capacity_mb: float,
    times: Sequence[float] | None = None,
    waits: float | Sequence[float] = 0.0,
) -> _Pooled | None:
    """The program of the module docstring; None when no pair of windows can be kept or lost."""
    scipy = _scipy()
    n = len(models)
    if n == 0 or not math.isfinite(capacity_mb):
        return None
    wait = [float(waits)] * n if isinstance(waits, int | float) else [float(w) for w in waits]
    if len(wait) != n or min(wait) < 0:
        raise ValueError("waits must be one number >= 0, or one per request")
    if times is None:
        if max(wait) > 0:
            raise ValueError("a bound with waiting needs the requests' times")
        times = range(n)  # only the order counts when nothing waits
    elif len(times) != n or any(b < a for a, b in itertools.pairwise(times)):
        raise ValueError("times must give one arrival time per request, in order")
    if min(capacity_mb - sizes[m] for m in models) < 0:
        raise ValueError("a model in the trace is larger than the pooled capacity")
    start = [float(t) for t in times]
    end = [t + w for t, w in zip(start, wait, strict=True)]
    openers = _window_openers(models, start, end)
    per_model: dict[str, list[int]] = {}
    for i in openers:
        per_model.setdefault(models[i], []).append(i)
    # in order of the first request of each pair (the columns' order steers HiGHS's search)
    pairs = sorted(pair for row in per_model.values() for pair in itertools.pairwise(row))
    if not pairs:
        return None
    opener_starts = [start[i] for i in openers]
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    for col, (a, b) in enumerate(pairs):
        size = float(sizes[models[a]])
        # openers of other models whose whole window lies in this pair's span [end_a, start_b]
        for row in range(
            bisect.bisect_left(opener_starts, end[a]), bisect.bisect_right(opener_starts, start[b])
        ):
            r = openers[row]
            if a < r < b and end[r] <= start[b] and models[r] != models[a]:
                rows.append(row)
                cols.append(col)
                values.append(size)
    room = [capacity_mb - sizes[models[i]] for i in openers]
    if max(wait) > 0:  # the kept spans alone, at each moment one begins
        span_starts = sorted(end[a] for a, _ in pairs)
        for col, (a, b) in enumerate(pairs):
            # [end_a, start_b): a model's next span may begin where this one ends
            first = bisect.bisect_left(span_starts, end[a])
            last = bisect.bisect_left(span_starts, start[b])
            for point in range(first, last):
                rows.append(len(openers) + point)
                cols.append(col)
                values.append(float(sizes[models[a]]))
        room += [capacity_mb] * len(span_starts)
    matrix = scipy.sparse.csr_matrix((values, (rows, cols)), shape=(len(room), len(pairs)))
    # windows - pairs = one per model: the loads no schedule avoids
    return _Pooled(len(per_model), len(pairs), matrix, room)


def _window_openers(
    models: Sequence[str], start: Sequence[float], end: Sequence[float]
) -> list[int]:
    """Per model, as many requests as possible whose windows [start, end] do not overlap
    (earliest end first, the classic greedy), as indices in arrival order."""
    last_end: dict[str, float] = {}
    chosen = []
    for i in sorted(range(len(models)), key=lambda i: (end[i], start[i], i)):
        if models[i] not in last_end or start[i] > last_end[models[i]]:
            last_end[models[i]] = end[i]
            chosen.append(i)
    return sorted(chosen)


def _loads(pooled: _Pooled, kept: float) -> int:
    """Cold loads when ``kept`` intervals (at most) stay loaded, rounded up with a tolerance
    for the solver's floating point."""
    return pooled.fixed + math.ceil(pooled.intervals - kept - 1e-6)


def lp_bound(
    models: Sequence[str],
    sizes: Mapping[str, int],
    capacity_mb: float,
    *,
    times: Sequence[float] | None = None,
    waits: float | Sequence[float] = 0.0,
) -> int:
    """The LP relaxation's optimum, rounded up: a bound for schedules in which each request
    finds its model in VRAM within ``waits`` seconds of its arrival (one number for all, or
    one per request; ``times``: the arrival times, needed when a wait is above 0). See the
    module docstring."""
    scipy = _scipy()
    pooled = _pooled(models, sizes, capacity_mb, times, waits)
    if pooled is None:
        return first_touch(models)
    result = scipy.optimize.linprog(
        c=[-1.0] * pooled.intervals,
        A_ub=pooled.matrix,
        b_ub=pooled.room,
        bounds=(0.0, 1.0),
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"LP bound: HiGHS did not solve the relaxation: {result.message}")
    return _loads(pooled, -float(result.fun))


def integer_bound(
    models: Sequence[str], sizes: Mapping[str, int], capacity_mb: float, node_limit: int = 1
) -> IntegerBound:
    """The integer program's proven bound after ``node_limit`` branch-and-bound nodes, and
    the best schedule found (see the module docstring).

    Example::

        >>> integer_bound(["a", "b", "a", "b"], {"a": 10, "b": 10}, capacity_mb=15)
        IntegerBound(bound=4, schedule=4)
    """
    scipy = _scipy()
    pooled = _pooled(models, sizes, capacity_mb)
    if pooled is None:
        return IntegerBound(first_touch(models), first_touch(models))
    opt = scipy.optimize
    result = opt.milp(
        c=[-1.0] * pooled.intervals,
        constraints=opt.LinearConstraint(pooled.matrix, -math.inf, pooled.room),
        integrality=[1] * pooled.intervals,
        bounds=opt.Bounds(0.0, 1.0),
        options={"node_limit": node_limit},
    )
    # 0: solved; 1 or 4 (HiGHS's "node limit", which scipy does not name): stopped early, with
    # a dual bound that holds all the same
    dual = getattr(result, "mip_dual_bound", None)
    if result.status not in (0, 1, 4) or dual is None or not math.isfinite(dual):
        raise RuntimeError(f"integer bound: HiGHS gave no dual bound: {result.message}")
    schedule = None
    if result.x is not None:  # each variable 0 or 1, up to the solver's tolerance
        schedule = pooled.fixed + pooled.intervals - round(float(sum(result.x)))
    return IntegerBound(_loads(pooled, -float(dual)), schedule)


def belady_reference(models: Sequence[str], sizes: Mapping[str, int], capacity_mb: float) -> int:
    """Belady/MIN with sizes on the pooled cache: evict the models needed furthest ahead
    until the new one fits. A reference heuristic, not a bound (module docstring)."""
    next_use = _next_use(models)
    resident: dict[str, int] = {}  # model -> index of its next use
    used = 0
    loads = 0
    for i, model in enumerate(models):
        if model not in resident:
            loads += 1
            while used + sizes[model] > capacity_mb and resident:
                victim = max(resident, key=lambda m: resident[m])
                used -= sizes[victim]
                del resident[victim]
            used += sizes[model]
        resident[model] = next_use[i]
    return loads


def _next_use(models: Sequence[str]) -> list[int]:
    """next_use[i]: index of the next request for models[i] after i (len(models) = never)."""
    next_use = [0] * len(models)
    upcoming: dict[str, int] = {}
    for i in range(len(models) - 1, -1, -1):
        next_use[i] = upcoming.get(models[i], len(models))
        upcoming[models[i]] = i
    return next_use
