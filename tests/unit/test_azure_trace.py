"""The Azure LLM inference trace 2023 converter (deploy/azure_trace.py), on small CSVs."""

from __future__ import annotations

from collections import Counter

import pytest

from modelfleet.deploy.azure_trace import azure_trace, read_azure_csv
from modelfleet.deploy.simulate import SimulationError

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def write(path, rows):
    path.write_text(HEADER + "".join(f"{t},{c},{g}\n" for t, c, g in rows))
    return path


def test_real_times_and_tokens_each_service_onto_its_family(tmp_path):
    code = write(
        tmp_path / "AzureLLMInferenceTrace_code.csv",
        [("2023-11-16 18:17:03.9799600", 4808, 10), ("2023-11-16 18:17:05.0000000", 110, 27)],
    )
    conv = write(tmp_path / "AzureLLMInferenceTrace_conv.csv", [("2023-11-16 18:17:04.5", 374, 44)])
    trace = azure_trace({code: ["coder"], conv: ["chat-a", "chat-b"]})
    assert [(round(r.t, 3), r.prompt_tokens, r.output_tokens) for r in trace] == [
        (0.0, 4808, 10),
        (0.52, 374, 44),
        (1.02, 110, 27),
    ]
    assert [r.model for r in trace][::2] == ["coder", "coder"]
    assert trace[1].model in {"chat-a", "chat-b"}
    assert [r.id for r in trace] == ["code0", "conv0", "code1"]


def test_thinning_keeps_every_nth_and_zipf_favours_the_first_model(tmp_path):
    rows = [(f"2023-11-16 18:{m:02d}:{s:02d}.0", 100, 10) for m in range(20) for s in range(60)]
    conv = write(tmp_path / "conv.csv", rows)
    trace = azure_trace({conv: ["head", "mid", "tail"]}, keep_every=4, seed=3)
    assert len(trace) == 300
    assert trace[1].t == pytest.approx(4.0)
    counts = Counter(r.model for r in trace)
    assert counts["head"] > counts["mid"] > counts["tail"] > 0
    assert azure_trace({conv: ["head", "mid", "tail"]}, keep_every=4, seed=3) == trace


def test_bad_rows_name_file_and_line(tmp_path):
    bad = write(tmp_path / "x.csv", [("2023-11-16 18:00:00.0", 1, 1), ("yesterday", 1, 1)])
    with pytest.raises(SimulationError, match=r"x\.csv:3: not a valid Azure trace row"):
        read_azure_csv(bad)
    (tmp_path / "y.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SimulationError, match=r"y\.csv: expected the columns"):
        read_azure_csv(tmp_path / "y.csv")
