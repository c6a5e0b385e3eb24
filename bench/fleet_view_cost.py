"""CPU cost of the policy's fleet view per request (router/state.py), rebuilt whole against
reused per backend (only the backend whose slot count a request changed is rebuilt).

Pure CPU, no I/O: ``--backends`` backends with ``--resident`` loaded models each::

    .venv/bin/python -m bench.fleet_view_cost --backends 6 --resident 10 --n 5000
"""

from __future__ import annotations

import argparse
import time

from modelfleet.router.config import RouterConfig
from modelfleet.router.state import FleetState


def fleet(backends: int, resident: int) -> FleetState:
    models = [{"name": f"m{j}", "size_mb": 5000} for j in range(resident + 2)]
    config = RouterConfig.model_validate(
        {
            "backends": [
                {"name": f"b{i}", "url": f"http://10.0.0.{i + 1}:11434", "vram_mb": 80000,
                 "slots": 4, "models": models}
                for i in range(backends)
            ]
        }
    )  # fmt: skip
    state = FleetState(config)
    for backend in state.backends.values():
        for j in range(resident):
            backend.model(f"m{j}").status = "loaded"
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=int, default=6)
    parser.add_argument("--resident", type=int, default=10)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    state, now = fleet(args.backends, args.resident), time.monotonic()
    backends = list(state.backends.values())
    ms = backends[0].model("m0")

    start = time.process_time()
    for _ in range(args.n):  # what the router did before: every backend built per request
        state.view(now)
        for backend in backends:
            backend.forget_view()
    whole_us = (time.process_time() - start) / args.n * 1e6

    start = time.process_time()
    for _ in range(args.n):  # a request takes a slot on one backend, then gives it back
        ms.in_flight += 1
        state.view(now)
        ms.in_flight -= 1
    reused_us = (time.process_time() - start) / args.n * 1e6
    print(
        f"{args.backends} backends x {args.resident} resident models: {whole_us:.0f} us per "
        f"view rebuilt whole, {reused_us:.0f} us with unchanged backends reused ({args.n} views)"
    )


if __name__ == "__main__":
    main()
