"""Markdown tables for docs/benchmarks.md, from the committed results in bench/results/.

    .venv/bin/python -m bench.report > /tmp/tables.md

The tables in docs/benchmarks.md are this script's output, pasted; re-run it after a new
measurement so that prose and numbers cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def machine_line(m: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in m["loadavg"])
    return f"{m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, load average {load}"


# The router's policy before routing engine v2: (cold loads, TTFT p99 s) per (seed, rate),
# from bench/results/routing_quality.json as committed at bf0e822 (git show
# bf0e822:bench/results/routing_quality.json); the reference for the v2 targets.
BEFORE_V2 = {
    (1, 1.0): (495, 39.0),
    (2, 1.0): (733, 81.5),
    (3, 1.0): (510, 37.2),
    (1, 0.5): (219, 70.7),
    (2, 0.5): (296, 40.8),
    (3, 0.5): (286, 98.0),
    (1, 2.0): (1091, 54.6),
    (2, 2.0): (1262, 1429.3),
    (3, 2.0): (1183, 73.6),
}
ROUTER = "modelfleet"
# Reference runs, not bounds (deploy/simulate.py, bench/routing_quality.py): the router's own
# rules with one thing changed. Key in the results -> (row label, "Against the targets" head).
REFERENCES = {
    "trace_rates": (
        "modelfleet knowing the true rates (reference: the trace's own rates, not a bound)",
        "knowing the true rates",
    ),
    "next_use_oracle": (
        "modelfleet with a next-use oracle (reference: clairvoyant demand, not a bound)",
        "next-use oracle",
    ),
    "instant_hardware": (
        "modelfleet with instant loads and decoding (reference: nothing ever takes time, "
        "not a bound)",
        "instant loads and decoding",
    ),
}


def _lp(s: dict[str, Any]) -> int:
    """The no-wait LP bound: a bound only for runs in which no request waits for its model."""
    bound = s["lower_bound"]
    return max(bound["lp"] or 0, bound["first_touch"], 1)


def _own_bound(run: dict[str, Any]) -> str:
    """ "bound (x)": the bound for this run's own waits and cold loads over it."""
    return f"{run['cold_load_bound']} ({run['cold_loads'] / run['cold_load_bound']:.2f})"


def _ratio(loads: int, bound: int | None) -> str:
    return f"{loads / bound:.2f}" if bound else ""


def _reference_cell(ref: dict[str, Any] | None, before: tuple[int, float] | None) -> str:
    """ "loads (change against before v2), p99" of a reference run, or empty."""
    if not ref:
        return ""
    change = f" ({(ref['cold_loads'] / before[0] - 1) * 100:+.0f} %)" if before else ""
    return f"{ref['cold_loads']}{change}, {ref['ttft_p99_s']:.1f}"


def routing_tables(report: dict[str, Any]) -> list[str]:
    out = ["### Every cell: policies, bounds\n"]
    out.append(
        "| workload | policy | cold loads | bound for its waits (x) | x no-wait LP | evictions "
        "| TTFT p50 s | TTFT p99 s | TTFT max s | req/s |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in report["scenarios"]:
        lp = _lp(s)
        runs = [(f"**{label}**" if label == ROUTER else label, p)
                for label, p in s["policies"].items()]  # fmt: skip
        runs += [(f"*{label}*", s[key]) for key, (label, _) in REFERENCES.items() if s.get(key)]
        for name, p in runs:
            out.append(
                f"| {s['label']} | {name} | {p['cold_loads']} | {_own_bound(p)} "
                f"| {p['cold_loads'] / lp:.2f} | {p['evictions']} | {p['ttft_p50_s']:.2f} "
                f"| {p['ttft_p99_s']:.1f} | {p['ttft_max_s']:.1f} | {p['throughput_rps']:.3f} |"
            )
        bound = s["lower_bound"]
        rows = [
            ("no-wait bound: LP relaxation, pooled", bound["lp"]),
            ("no-wait bound: integer program, pooled, root node", bound.get("integer")),
            ("best no-wait pooled schedule found (reference, not a bound)",
             bound.get("integer_schedule")),
            ("bound for every run: first touch", bound["first_touch"]),
            ("Belady replay (reference heuristic, not a bound)", bound["belady_reference"]),
        ]  # fmt: skip
        for name, loads in rows:
            if loads:
                out.append(f"| {s['label']} | *{name}* | {loads} | | {loads / lp:.2f} | | | | | |")

    out.append("\n### Against the targets\n")
    out.append(
        "| workload | router cold loads | x no-wait LP | x no-wait integer "
        "| router TTFT max s | bound for its waits (x) | before v2 | change | router p99 s "
        "| before v2 p99 s | scale-outs | "
        + " | ".join(f"{head}: loads (change), p99 s" for _, head in REFERENCES.values())
        + " | baselines better on both loads and p99 |"
    )
    out.append("|---" + "|---:" * (10 + len(REFERENCES)) + "|---|")
    for s in report["scenarios"]:
        mf = s["policies"][ROUTER]
        before = BEFORE_V2.get((s.get("seed"), s.get("rate_rps")))
        beaten = [
            label
            for label, p in s["policies"].items()
            if label != ROUTER
            and p["cold_loads"] < mf["cold_loads"]
            and p["ttft_p99_s"] < mf["ttft_p99_s"]
        ]
        change = f"{(mf['cold_loads'] / before[0] - 1) * 100:+.0f} %" if before else ""
        refs = [_reference_cell(s.get(key), before) for key in REFERENCES]
        out.append(
            f"| {s['label']} | {mf['cold_loads']} | {mf['cold_loads'] / _lp(s):.2f} "
            f"| {_ratio(mf['cold_loads'], s['lower_bound'].get('integer'))} "
            f"| {mf['ttft_max_s']:.1f} | {_own_bound(mf)} "
            f"| {before[0] if before else ''} | {change} | {mf['ttft_p99_s']:.1f} "
            f"| {before[1] if before else ''} | {mf['decisions'].get('scale-out', 0)} "
            f"| {' | '.join(refs)} | {', '.join(beaten) or 'none'} |"
        )

    curve = report.get("hold_curve") or []
    if curve:
        holds = sorted({p["max_hold_s"] for p in curve})
        out.append("\n### `max_hold_s`: cold loads / TTFT p99 s (router alone)\n")
        out.append("| workload | " + " | ".join(f"{h:g} s" for h in holds) + " |")
        out.append("|---|" + "---:|" * len(holds))
        cells: dict[str, dict[float, dict[str, Any]]] = {}
        for point in curve:
            cells.setdefault(point["cell"], {})[point["max_hold_s"]] = point
        for cell, points in cells.items():
            row = [f"{points[h]['cold_loads']} / {points[h]['ttft_p99_s']:.1f}" for h in holds]
            out.append(f"| {cell} | " + " | ".join(row) + " |")
    return out


# The policy before this round's two changes (a loading model counts as room a hold can wait
# for; wait-loader), commit ed0873d, run by the same commands on that commit: git show
# ed0873d:bench/results/routing_quality.json, and --seeds 4 5 6 7 --rates 1 0.5 --azure none
# there. The reference for this round's changes.
BEFORE_ROUND = {
    "routing_quality.json": "routing_quality_ed0873d.json",
    "routing_quality_seeds4-7.json": "routing_quality_seeds4-7_ed0873d.json",
}


def round_change_table() -> list[str]:
    """The router's row, before this round's changes and now, on every cell of both files:
    cold loads, p99 and mean TTFT."""
    out = [
        "| workload | cold loads before / now | change | p99 s before / now "
        "| mean TTFT s before / now |",
        "|---|---:|---:|---:|---:|",
    ]
    for now_name, before_name in BEFORE_ROUND.items():
        now, before = _load(now_name), _load(before_name)
        if not now or not before:
            continue
        for s_now, s_before in zip(now["scenarios"], before["scenarios"], strict=True):
            a, b = s_before["policies"][ROUTER], s_now["policies"][ROUTER]
            change = (b["cold_loads"] / a["cold_loads"] - 1) * 100
            out.append(
                f"| {s_now['label']} | {a['cold_loads']} / {b['cold_loads']} | {change:+.0f} % "
                f"| {a['ttft_p99_s']:.1f} / {b['ttft_p99_s']:.1f} "
                f"| {a['ttft_mean_s']:.2f} / {b['ttft_mean_s']:.2f} |"
            )
    return out


def proxy_tables(report: dict[str, Any]) -> list[str]:
    out = [f"Machine: {machine_line(report['machine_before'])} before; "
           f"load average {', '.join(f'{x:.2f}' for x in report['machine_after']['loadavg'])} "
           "after.\n"]  # fmt: skip
    out.append(
        "| target | p50 ms | p99 ms | p50 overhead ms | CPU us/req | backend CPU us/req "
        "| req/s c=32 | x direct | stream TTFT p50 ms | p99 ms | TTFT - direct ms "
        "| chunks/s c=16 | x direct | errors |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in report["results"].items():
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        cpu = r.get("cpu_us_per_req")
        added_ttft = r.get("stream_ttft_added_p50_ms")
        backend_cpu = r.get("backend_cpu_us_per_req")
        out.append(
            f"| {name} | {r['latency_p50_ms']:.2f} | {r['latency_p99_ms']:.2f} "
            f"| {r['overhead_p50_ms']:+.2f} | {'-' if cpu is None else f'{cpu:.0f}'} "
            f"| {'-' if backend_cpu is None else f'{backend_cpu:.0f}'} "
            f"| {r['rps_c32_mean']:.0f} | {r['rps_vs_direct']:.2f} "
            f"| {r['stream_ttft_p50_ms']:.2f} | {r['stream_ttft_p99_ms']:.2f} "
            f"| {'-' if added_ttft is None else f'{added_ttft:+.2f}'} "
            f"| {r['stream_chunks_per_s_mean']:.0f} | {r['stream_vs_direct']:.2f} | {errors} |"
        )
    whole = report["results"].get("direct", {}).get("stream_whole_p50_ms")
    if whole is not None:
        out.append(
            f"\nThe backend alone, asked for the same answer as a stream (what the router asks "
            f"for when a client wants one JSON answer): {whole:.2f} ms p50 for the whole "
            f"stream at concurrency 1, against {report['results']['direct']['latency_p50_ms']:.2f}"
            " ms for the JSON answer."
        )
    out.append("\np50 overhead per round (ms, target minus direct in the same round):\n")
    for name, r in report["results"].items():
        if name != "direct" and r.get("overhead_p50_ms_by_round"):
            rounds = ", ".join(f"{x:+.2f}" for x in r["overhead_p50_ms_by_round"])
            out.append(f"- {name}: {rounds}")
    out.append(
        "\nVersions: " + "; ".join(f"{n}: {t['version']}" for n, t in report["targets"].items())
    )
    for concurrency in (1, 32):
        profile = report.get(f"router_profile_c{concurrency}")
        if not profile or "self_by_area_pct" not in profile:
            continue
        out.append(
            f"\n**Router profile at concurrency {concurrency}** "
            f"(py-spy, {profile['samples']} samples):\n"
        )
        out.append("| where (leaf frame) | % of samples |")
        out.append("|---|---:|")
        for area, share in profile["self_by_area_pct"].items():
            out.append(f"| {area} | {share} |")
        out.append("\n| router function (inclusive) | % of samples |")
        out.append("|---|---:|")
        for name, share in profile["router_inclusive_top"][:12]:
            out.append(f"| `{name}` | {share} |")
    return out


def deploy_tables(report: dict[str, Any]) -> list[str]:
    out = [f"Machine: {machine_line(report['machine_before'])} before. "
           f"Commit {report['commit'][:12]}.\n"]  # fmt: skip
    out.append(
        "| hosts | kinds | containers up s | first deploy s | operations (changed) "
        "| no-op re-run s | changed on re-run |"
    )
    out.append("|---:|---|---:|---:|---:|---:|---|")
    for run in report["runs"]:
        first = run["first_totals"]
        changed = run["noop_totals"]["success"]
        ops = ", ".join(run["noop_changed_ops"]) or "nothing"
        out.append(
            f"| {run['hosts']} | {', '.join(run['kinds'])} | {run['containers_up_s']} "
            f"| {run['first_s']} | {first['hosts']} ({first['success']}) | {run['noop_s']} "
            f"| {changed} ({ops}) |"
        )
    return out


def main() -> None:
    print("\n<!-- this round's changes: the router before (ed0873d) and now -->\n")
    print("\n".join(round_change_table()))
    for name, render in (
        ("routing_quality.json", routing_tables),
        ("proxy_overhead.json", proxy_tables),
        ("deploy_time.json", deploy_tables),
    ):
        report = _load(name)
        print(f"\n<!-- {name}: {report['command'] if report else 'missing'} -->\n")
        if report:
            print("\n".join(render(report)))


if __name__ == "__main__":
    main()
