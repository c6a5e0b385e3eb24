"""PNG plots for docs/benchmarks.md from the committed results in bench/results/*.json.

    .venv/bin/python -m bench.plots            # writes bench/results/*.png

Needs matplotlib (the ``bench`` extra). A missing results file skips its plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the file-only backend

RESULTS = Path(__file__).resolve().parent / "results"
COLORS = {
    "modelfleet": "#1f77b4",
    "modelfleet router": "#1f77b4",
    "round-robin": "#d62728",
    "least-connections": "#ff7f0e",
    "least-models (PolyLlama)": "#2ca02c",
    "direct": "#7f7f7f",
    "nginx": "#2ca02c",
    "LiteLLM proxy": "#9467bd",
    "modelfleet, stream_upstream off": "#aec7e8",
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _save(fig: Any, name: str) -> None:
    fig.tight_layout()
    fig.savefig(RESULTS / name, dpi=110)
    plt.close(fig)
    print(f"wrote {RESULTS / name}")


def routing_plots(report: dict[str, Any]) -> None:
    cells = report["scenarios"]
    policies = list(cells[0]["policies"])
    labels = [c["label"].replace("synthetic ", "").replace(", every 8th", "") for c in cells]
    width = 0.8 / len(policies)

    fig, ax = plt.subplots(figsize=(11, 4.4))
    for i, label in enumerate(policies):
        values = [c["policies"][label]["cold_loads"] for c in cells]
        xs = [k + i * width for k in range(len(cells))]
        ax.bar(xs, values, width, label=label, color=COLORS.get(label))
    centers = [k + 0.4 - width / 2 for k in range(len(cells))]
    # what is proven for the router's own run: no request served later than it was there
    router_bound = [c["policies"]["modelfleet"]["cold_load_bound"] for c in cells]
    ax.scatter(centers, router_bound, marker="_", s=900, color="black", zorder=3,
               label="bound for the router's waits (LP, pooled)")  # fmt: skip
    no_wait = [c["lower_bound"]["lp"] for c in cells]
    ax.scatter(centers, no_wait, marker="_", s=900, color="grey", zorder=3,
               label="no-wait LP (a bound only if no request waits)")  # fmt: skip
    ax.set_xticks(centers)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("cold loads in 1 h (log; fewer is better)")
    ax.set_title("Cold loads per workload, with the LP bounds with and without waiting")
    ax.legend(fontsize=8, ncol=3)
    _save(fig, "routing_cold_loads.png")

    fig, ax = plt.subplots(figsize=(11, 4.2))
    for i, label in enumerate(policies):
        values = [max(c["policies"][label]["ttft_p99_s"], 1e-3) for c in cells]
        xs = [k + i * width for k in range(len(cells))]
        ax.bar(xs, values, width, label=label, color=COLORS.get(label))
    ax.set_yscale("log")
    ax.set_xticks(centers)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("TTFT p99, seconds (log)")
    ax.set_title("Time to first token, p99, per workload")
    ax.legend(fontsize=8, ncol=2)
    _save(fig, "routing_ttft.png")

    curve = report.get("hold_curve") or []
    if curve:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        by_cell: dict[str, list[dict[str, Any]]] = {}
        for point in curve:
            by_cell.setdefault(point["cell"], []).append(point)
        for cell, points in by_cell.items():
            if "2 req/s" in cell:
                continue  # an overloaded fleet: p99 is queueing, off this plot's scale
            points.sort(key=lambda p: p["max_hold_s"])
            xs = [p["cold_loads"] for p in points]
            ys = [p["ttft_p99_s"] for p in points]
            (line,) = ax.plot(xs, ys, marker="o", label=cell)
            for p in points:
                ax.annotate(f"{p['max_hold_s']:g}", (p["cold_loads"], p["ttft_p99_s"]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points",
                            color=line.get_color())  # fmt: skip
        ax.set_xlabel("cold loads in 1 h")
        ax.set_ylabel("TTFT p99, seconds")
        ax.set_title("Router policy: cold loads vs p99 TTFT across max_hold_s (labels, s)")
        ax.legend(fontsize=7)
        _save(fig, "routing_hold_curve.png")

    timeline = report.get("timeline")
    if timeline:
        fig, ax = plt.subplots(figsize=(9, 3.8))
        for label in policies:
            times = timeline[label]
            ax.plot(times, range(1, len(times) + 1), label=label, color=COLORS.get(label))
        ax.axvline(1800, color="grey", linestyle=":", label="popular set shifts")
        ax.set_xlabel("trace time (s)")
        ax.set_ylabel("cumulative cold loads")
        ax.set_title(
            f"Cold loads over time (seed {timeline['seed']}, {timeline['rate_rps']} req/s)"
        )
        ax.legend(fontsize=8)
        _save(fig, "routing_timeline.png")


def proxy_plots(report: dict[str, Any]) -> None:
    results = report["results"]
    names = list(results)
    colors = [COLORS.get(n, "#333333") for n in names]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    panels = [
        (axes[0][0], "latency_p50_ms", "latency p50, concurrency 1 (ms)", True),
        (axes[0][1], "rps_c32_mean", "requests/s, concurrency 32", False),
        (axes[1][0], "stream_ttft_p50_ms", "streaming TTFT p50, concurrency 16 (ms)", True),
        (axes[1][1], "stream_chunks_per_s_mean", "streaming chunks/s, concurrency 16", False),
    ]
    for ax, key, title, log in panels:
        values = [results[n][key] for n in names]
        ax.bar(range(len(names)), values, color=colors)
        for x, v in enumerate(values):
            label = f"{v:,.0f}" if v >= 100 else f"{v:.2f}"
            ax.text(x, v, label, ha="center", va="bottom", fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_title(title, fontsize=10)
    _save(fig, "proxy_overhead.png")


def deploy_plots(report: dict[str, Any]) -> None:
    runs = report["runs"]
    hosts = [r["hosts"] for r in runs]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(hosts, [r["first_s"] for r in runs], "o-", label="first deploy")
    ax.plot(hosts, [r["noop_s"] for r in runs], "s-", label="no-op re-run")
    ax.set_xlabel("container hosts")
    ax.set_ylabel("wall time (s)")
    ax.set_xticks(hosts)
    ax.set_title("pyinfra deploy time vs fleet size")
    ax.legend()
    _save(fig, "deploy_time.png")


def main() -> None:
    for name, plot in (
        ("routing_quality.json", routing_plots),
        ("proxy_overhead.json", proxy_plots),
        ("deploy_time.json", deploy_plots),
    ):
        report = _load(name)
        if report is None:
            print(f"skip {name}: not there")
        else:
            plot(report)


if __name__ == "__main__":
    main()
