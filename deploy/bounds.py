"""Lower bounds on cold loads for a trace, and one reference heuristic.

Every routing result should sit next to a number no policy can beat. Two are valid here:

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

``belady_reference``
    NOT a bound: Belady's furthest-next-use eviction on the same pooled cache. With equal
    sizes it is optimal; with unequal sizes it is only a strong heuristic, and an exact
    integer program finds schedules with fewer loads. It is kept as a reference point.

Example::

    >>> lp_bound(["a", "b", "a", "b"], {"a": 10, "b": 10}, capacity_mb=15)
    3

(any real schedule needs 4 there: the LP keeps half of each model loaded between its requests.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


class BoundUnavailable(RuntimeError):
    """The LP bound cannot be computed here (scipy is not installed)."""


def first_touch(models: Sequence[str]) -> int:
    return len(set(models))


def lp_bound(models: Sequence[str], sizes: Mapping[str, int], capacity_mb: float) -> int:
    """The LP relaxation's optimum, rounded up (see the module docstring)."""
    try:
        from scipy.optimize import linprog
        from scipy.sparse import csr_matrix
    except ImportError as exc:
        raise BoundUnavailable(
            "the LP bound needs scipy: pip install 'modelfleet[simulate]'"
        ) from exc

    n = len(models)
    if n == 0:
        return 0
    if not math.isfinite(capacity_mb):
        return first_touch(models)
    next_use = _next_use(models)
    # one variable per request that has a next request of its model
    intervals = [(i, next_use[i]) for i in range(n) if next_use[i] < n]
    rows: list[int] = []
    cols: list[int] = []
    values: list[float] = []
    for col, (start, end) in enumerate(intervals):
        size = float(sizes[models[start]])
        for t in range(start + 1, end):
            rows.append(t)
            cols.append(col)
            values.append(size)
    fixed = first_touch(models)
    if not intervals:
        return fixed
    matrix = csr_matrix((values, (rows, cols)), shape=(n, len(intervals)))
    room = [capacity_mb - sizes[m] for m in models]
    if min(room) < 0:
        raise ValueError("a model in the trace is larger than the pooled capacity")
    result = linprog(
        c=[-1.0] * len(intervals),
        A_ub=matrix,
        b_ub=room,
        bounds=(0.0, 1.0),
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"LP bound: HiGHS did not solve the relaxation: {result.message}")
    kept = -float(result.fun)
    # round up, with a tolerance for the solver's floating point
    return fixed + math.ceil(len(intervals) - kept - 1e-6)


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
