"""Lower bounds on cold loads for a trace, and one reference heuristic.

Every routing result should sit next to a number no policy can beat. Three are valid here:

``first_touch``
    Every distinct model is loaded at least once.

``lp``
    The LP relaxation of offline caching with sizes, over the *pooled* problem: the whole
    fleet's VRAM as one cache, requests served one at a time in arrival order, loads that
    take no time. Each of those assumptions only makes the problem easier than the real
    fleet's (hosts split the VRAM, a model can only sit where it fits, loads take seconds
    during which the room is held), so the LP optimum, rounded up, is a lower bound on the
    cold loads of any policy on any fleet with that much VRAM, for that order of requests.

    Variables: for each request ``i`` whose model ``m`` is asked for again at ``k``,
    ``x_i`` in [0, 1] = how much of ``m`` stays loaded from ``i`` to ``k`` (1: no reload in
    between). Cold loads = distinct models + sum(1 - x_i). At every request ``t`` the model
    asked for is loaded in full, so ``sum(size_m * x_i over intervals spanning t) <=
    capacity - size(model_t)``. Solved with scipy's HiGHS (a few tenths of a second for
    the hour-long traces in ``bench/``).

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

(any real schedule needs 4 there: the LP keeps half of each model loaded between its
requests; ``integer_bound`` on the same input proves 4.)
"""

from __future__ import annotations

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


def _pooled(models: Sequence[str], sizes: Mapping[str, int], capacity_mb: float) -> _Pooled | None:
    """The program of the module docstring; None when no interval can be kept or lost."""
    scipy = _scipy()
    n = len(models)
    if n == 0 or not math.isfinite(capacity_mb):
        return None
    next_use = _next_use(models)
    # one variable per request that has a next request of its model
    intervals = [(i, next_use[i]) for i in range(n) if next_use[i] < n]
    if not intervals:
        return None
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    for col, (start, end) in enumerate(intervals):
        size = float(sizes[models[start]])
        for t in range(start + 1, end):
            rows.append(t)
            cols.append(col)
            values.append(size)
    matrix = scipy.sparse.csr_matrix((values, (rows, cols)), shape=(n, len(intervals)))
    room = [capacity_mb - sizes[m] for m in models]
    if min(room) < 0:
        raise ValueError("a model in the trace is larger than the pooled capacity")
    return _Pooled(first_touch(models), len(intervals), matrix, room)


def _loads(pooled: _Pooled, kept: float) -> int:
    """Cold loads when ``kept`` intervals (at most) stay loaded, rounded up with a tolerance
    for the solver's floating point."""
    return pooled.fixed + math.ceil(pooled.intervals - kept - 1e-6)


def lp_bound(models: Sequence[str], sizes: Mapping[str, int], capacity_mb: float) -> int:
    """The LP relaxation's optimum, rounded up (see the module docstring)."""
    scipy = _scipy()
    pooled = _pooled(models, sizes, capacity_mb)
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
