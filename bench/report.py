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


def routing_tables(report: dict[str, Any]) -> list[str]:
    out = []
    main = [s for s in report["scenarios"] if "diagnosis" in s]
    out.append("### Main case: 1 req/s + bursts, models stay loaded until evicted\n")
    out.append(
        "| seed | policy | cold loads | x Belady | evictions | TTFT p50 s | TTFT p99 s | req/s |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in main:
        bound = s["lower_bound"]["pooled"]
        for label, p in s["policies"].items():
            out.append(
                f"| {s['seed']} | {label} | {p['cold_loads']} | {p['cold_loads'] / bound:.2f} "
                f"| {p['evictions']} | {p['ttft_p50_s']:.2f} | {p['ttft_p99_s']:.1f} "
                f"| {p['throughput_rps']:.3f} |"
            )
        refs = s["diagnosis"]["online_references"]
        out.append(
            f"| {s['seed']} | *online pooled LRU (reference)* | {refs['pooled_lru']} "
            f"| {refs['pooled_lru'] / bound:.2f} | | | | |"
        )
        out.append(
            f"| {s['seed']} | *online pooled, router's eviction rule (reference)* "
            f"| {refs['pooled_demand']} | {refs['pooled_demand'] / bound:.2f} | | | | |"
        )
        out.append(f"| {s['seed']} | **offline bound (Belady)** | {bound} | 1.00 | | | | |")

    out.append("\n### Headline ratios (main case)\n")
    out.append(
        "| seed | modelfleet / Belady | modelfleet / round-robin | "
        "modelfleet / PolyLlama | TTFT p99: round-robin / modelfleet |"
    )
    out.append("|---|---:|---:|---:|---:|")
    for s in main:
        p = s["policies"]
        mf = p["modelfleet"]
        out.append(
            f"| {s['seed']} | {mf['cold_loads'] / s['lower_bound']['pooled']:.2f} "
            f"| {mf['cold_loads'] / p['round-robin']['cold_loads']:.2f} "
            f"| {mf['cold_loads'] / p['least-models (PolyLlama)']['cold_loads']:.2f} "
            f"| {p['round-robin']['ttft_p99_s'] / mf['ttft_p99_s']:.1f} |"
        )

    out.append("\n### Diagnosis: victims the policy evicted without needing to\n")
    out.append(
        "| seed | eviction decisions | victims | not needed | cold loads | "
        "what-if without them | x Belady |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for s in main:
        d = s["diagnosis"]
        trimmed = d["trimmed_evictions_what_if"]["cold_loads"]
        out.append(
            f"| {s['seed']} | {d['evict_decisions']} | {d['victims']} | {d['victims_not_needed']} "
            f"| {s['policies']['modelfleet']['cold_loads']} | {trimmed} "
            f"| {trimmed / s['lower_bound']['pooled']:.2f} |"
        )

    out.append("\n### Other rates and keep-alive (means over the seeds)\n")
    out.append(
        "| rate req/s | keep-alive | policy | cold loads | x Belady | TTFT p50 s | TTFT p99 s |"
    )
    out.append("|---:|---|---|---:|---:|---:|---:|")
    groups: dict[tuple[float, Any], list[dict[str, Any]]] = {}
    for s in report["scenarios"]:
        groups.setdefault((s["rate_rps"], s["keep_alive_s"]), []).append(s)
    for (rate, keep_alive), runs in groups.items():
        for label in runs[0]["policies"]:
            loads = [r["policies"][label]["cold_loads"] for r in runs]
            ratio = [r["policies"][label]["cold_loads"] / r["lower_bound"]["pooled"] for r in runs]
            p50 = [r["policies"][label]["ttft_p50_s"] for r in runs]
            p99 = [r["policies"][label]["ttft_p99_s"] for r in runs]
            ka = "never" if keep_alive is None else f"{keep_alive:.0f} s"
            out.append(
                f"| {rate} | {ka} | {label} | {sum(loads) / len(loads):.0f} "
                f"| {sum(ratio) / len(ratio):.2f} | {sum(p50) / len(p50):.2f} "
                f"| {sum(p99) / len(p99):.1f} |"
            )
    return out


def proxy_tables(report: dict[str, Any]) -> list[str]:
    out = [f"Machine: {machine_line(report['machine_before'])} before; "
           f"load average {', '.join(f'{x:.2f}' for x in report['machine_after']['loadavg'])} "
           "after.\n"]  # fmt: skip
    out.append(
        "| target | p50 ms | p99 ms | p50 overhead ms | req/s c=32 | x direct "
        "| stream TTFT p50 ms | p99 ms | chunks/s c=16 | x direct | errors |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in report["results"].items():
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        out.append(
            f"| {name} | {r['latency_p50_ms']:.2f} | {r['latency_p99_ms']:.2f} "
            f"| {r['overhead_p50_ms']:+.2f} | {r['rps_c32_mean']:.0f} | {r['rps_vs_direct']:.2f} "
            f"| {r['stream_ttft_p50_ms']:.2f} | {r['stream_ttft_p99_ms']:.2f} "
            f"| {r['stream_chunks_per_s_mean']:.0f} | {r['stream_vs_direct']:.2f} | {errors} |"
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
