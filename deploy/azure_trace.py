"""Convert the public Azure LLM inference trace 2023 into a simulator trace.

The trace (Patel et al., "Splitwise", ISCA 2024; CC-BY 4.0; AzurePublicDataset) is two
one-hour samples of production requests, a code-completion service and a conversation
service: ``TIMESTAMP,ContextTokens,GeneratedTokens`` per request, and no model names. So a
replay must say which model each request asks for. The mapping here, which is part of any
result measured on it:

* **each service gets its own family of catalog models** (code requests never ask for a
  chat model and the other way round);
* **inside a family, popularity is Zipf** (``zipf_s``, rank 1 = the first model listed) and
  each request draws its model independently from that distribution with a fixed seed (the
  trace has no sessions or users to correlate on);
* **arrival times and token counts are the real ones**: ``t`` = seconds since the first
  request of either service, ``prompt_tokens`` = ``ContextTokens``, ``output_tokens`` =
  ``GeneratedTokens``;
* **thinning**: ``keep_every`` keeps every n-th request of each service in time order (the
  full trace, 7.8 req/s, is several times what the modeled six-host fleet can serve), which
  scales the rate down and keeps the shape of its bursts.

Example::

    trace = azure_trace(
        {"code.csv": ["qwen2.5-coder-32b", "devstral-24b"], "conv.csv": ["llama3.1-8b"]},
        keep_every=8,
    )
    write_trace(trace, "azure.jsonl")  # deploy.simulate.write_trace

or, from the shell::

    python -m modelfleet.deploy.azure_trace CODE.csv=m1,m2 CONV.csv=m3,m4 \
        --keep-every 8 --out t.jsonl
"""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import click

from modelfleet.deploy.simulate import (
    Request,
    SimulationError,
    read_lines,
    write_trace,
    written,
    zipf_weights,
)

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def read_azure_csv(path: str | Path) -> list[tuple[float, int, int]]:
    """(unix time, context tokens, generated tokens) per row; errors name file and line."""
    path = Path(path)
    reader = csv.DictReader(read_lines(path))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise SimulationError(f"{path}: expected the columns {','.join(COLUMNS)}")
    rows = []
    for number, row in enumerate(reader, start=2):
        try:
            at = _timestamp(row["TIMESTAMP"])
            context, generated = int(row["ContextTokens"]), int(row["GeneratedTokens"])
            if context < 0 or generated < 0:
                raise ValueError("a negative token count")
        except (ValueError, TypeError):
            raise SimulationError(f"{path}:{number}: not a valid Azure trace row: {row}") from None
        rows.append((at, context, generated))
    if not rows:
        raise SimulationError(f"{path}: no requests")
    return rows


def _timestamp(text: str) -> float:
    """``2023-11-16 18:17:03.9799600``: seven fractional digits, one more than Python reads."""
    whole, _, fraction = text.strip().partition(".")
    at = datetime.fromisoformat(whole)
    return at.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def azure_trace(
    services: Mapping[str | Path, Sequence[str]],
    *,
    keep_every: int = 1,
    zipf_s: float = 1.1,
    seed: int = 1,
) -> list[Request]:
    """The mapped trace (module docstring): ``services`` maps each CSV to its model family,
    most popular first."""
    if keep_every < 1:
        raise SimulationError("keep_every must be >= 1")
    rng = random.Random(seed)
    timed: list[tuple[float, str, int, int, str]] = []
    for path, family in services.items():
        if not family:
            raise SimulationError(f"{path}: the service is mapped onto no models")
        weights = zipf_weights(len(family), zipf_s)
        service = Path(path).stem.rsplit("_", 1)[-1]
        rows = sorted(read_azure_csv(path))[::keep_every]
        for index, (at, context, generated) in enumerate(rows):
            model = rng.choices(family, weights)[0]
            timed.append((at, model, context, generated, f"{service}{index}"))
    timed.sort()
    start = timed[0][0]
    return [Request(at - start, model, p, o, rid) for at, model, p, o, rid in timed]


@click.command("azure-trace")
@click.argument("services", nargs=-1, required=True)
@click.option("--keep-every", default=1, show_default=True, help="keep every n-th request")
@click.option("--zipf-s", default=1.1, show_default=True, help="popularity skew in a family")
@click.option("--seed", default=1, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="JSONL trace")
def main(services: tuple[str, ...], keep_every: int, zipf_s: float, seed: int, out: str) -> None:
    """Write a simulator trace from Azure trace CSVs: SERVICES are CSV=model1,model2,..."""
    mapping: dict[str | Path, list[str]] = {}
    for item in services:
        path, sep, models = item.partition("=")
        if not sep or not models:
            raise click.UsageError(f"{item!r}: expected CSV=model1,model2,...")
        mapping[path] = [m for m in models.split(",") if m]
    try:
        trace = azure_trace(mapping, keep_every=keep_every, zipf_s=zipf_s, seed=seed)
    except SimulationError as exc:
        raise click.ClickException(str(exc)) from None
    with written(out):
        write_trace(trace, out)
    click.echo(f"wrote {len(trace)} requests over {trace[-1].t:.0f} s to {out}")


if __name__ == "__main__":
    main()
