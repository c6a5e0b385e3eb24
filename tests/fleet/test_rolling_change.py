"""Fleet changes under load cut no request (marker ``fleet``): ``bench/rolling_change.py``.

Four clients stream chat completions through the router, to the real llama-server and to the
two stand-ins, while the deploy

a. changes the llama-swap host's model set (its instance restarts: drained, in its batch);
b. upgrades the Ollama stand-in from release v1 to v2 (its instance restarts on the new one);
c. rolls a new router release out (socket activation: the old process finishes its requests).

Every scenario must really restart its target, drain it through the router where it is a
backend, and leave every request answered in full: 0 failed, 0 cut. A re-run then changes
nothing. The benchmark reports the same runs with their latencies (docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import rolling_change
from bench.rolling_change import BenchFleet, measure, new_router_release, scenarios


@pytest.fixture(scope="module")
def fleet(fleet_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchFleet]:
    workdir = tmp_path_factory.mktemp("rolling")
    with rolling_change.bench_fleet(workdir) as deployed:
        yield deployed


def test_rolling_changes_fail_and_cut_no_request(fleet: BenchFleet) -> None:
    workdir = fleet.data_file.parent
    new_router_release(workdir / "next-release")
    seen = []
    for name, change, target in scenarios(fleet, workdir):
        outcome = measure(fleet, name, change, target, workdir)
        seen.append(outcome)
        assert outcome.restarted, f"{name}: {target} was not restarted"
        assert outcome.sent >= 8, outcome
        assert (outcome.failed, outcome.cut) == (0, 0), outcome
        if name.startswith(("a", "b")):
            # The restart went through the router: drained, then undrained.
            assert any(" drained: " in line for line in outcome.drain_lines), outcome
            assert any(" undrained" in line for line in outcome.drain_lines), outcome
    rerun = fleet.deploy(cwd=Path(workdir / "next-release"))
    assert rerun["results"]["totals"]["success"] == 0, rerun["stderr"][-3000:]
    assert len(seen) == 3
