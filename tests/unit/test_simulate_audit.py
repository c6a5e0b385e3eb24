"""`modelfleet simulate` as an operator runs it: inputs that are not UTF-8, outputs that cannot
be written, a saved trace that replays the run, and the figures docs/simulate.md quotes."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelfleet.deploy import azure_trace
from modelfleet.deploy.simulate import (
    SimulationError,
    read_trace,
    simulate_command,
    trace_from_access_log,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO / "inventory" / "example.py")
SHORT = [EXAMPLE, "--synthetic", "--duration", "120", "--policy", "modelfleet"]
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(simulate_command, list(args))
    return result.exit_code, result.output


# --------------------------------------------------------------------------- inputs


# (what an operator hands in, the line the first byte that is not UTF-8 is on)
NOT_UTF8 = [
    # a trace written by PowerShell's `>`: UTF-16 with a byte order mark
    pytest.param('{"t": 0, "model": "llama3.1-8b"}\n'.encode("utf-16"), 1, id="utf-16"),
    # a Latin-1 request id on the second line
    pytest.param(b'{"t": 0, "model": "llama3.1-8b"}\n{"t": 1, "model": "x", "id": "caf\xe9"}\n',
                 2, id="latin-1"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "line"), NOT_UTF8)
@pytest.mark.parametrize("option", ["--trace", "--access-log"])
def test_a_trace_that_is_not_utf8_is_an_error_naming_file_and_line(tmp_path, option, content, line):
    # was a UnicodeDecodeError traceback
    bad = tmp_path / "trace.jsonl"
    bad.write_bytes(content)
    code, text = run(*SHORT[:1], option, str(bad), "--policy", "modelfleet")
    assert code == 1, text
    assert f"Error: {bad}:{line}: not UTF-8 text" in text and "Traceback" not in text


@pytest.mark.parametrize("read", [read_trace, trace_from_access_log])
def test_the_readers_refuse_non_utf8_with_a_simulation_error(tmp_path, read):
    bad = tmp_path / "trace.jsonl"
    bad.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(SimulationError, match=r"trace\.jsonl:1: not UTF-8 text"):
        read(bad)


def test_a_utf8_byte_order_mark_is_no_error(tmp_path):
    # Notepad and Excel save UTF-8 with a BOM; it was "not JSON: Unexpected UTF-8 BOM"
    trace = tmp_path / "trace.jsonl"
    trace.write_bytes(b'\xef\xbb\xbf{"t": 0, "model": "llama3.1-8b"}\n')
    assert [r.model for r in read_trace(trace)] == ["llama3.1-8b"]
    csv = tmp_path / "AzureLLMInferenceTrace_code.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + (AZURE_HEADER + "2023-11-16 18:17:03.5,10,2\n").encode())
    assert azure_trace.read_azure_csv(csv)[0][1:] == (10, 2)


def test_an_azure_csv_that_is_not_utf8_is_an_error(tmp_path):
    csv = tmp_path / "AzureLLMInferenceTrace_code.csv"
    csv.write_bytes(AZURE_HEADER.encode("utf-16"))
    with pytest.raises(SimulationError, match=r"_code\.csv:1: not UTF-8 text"):
        azure_trace.read_azure_csv(csv)


@pytest.mark.parametrize("column", ["ContextTokens", "GeneratedTokens"])
def test_an_azure_row_with_a_negative_token_count_names_file_and_line(tmp_path, column):
    # was written to the trace, to be refused later by `simulate --trace` naming the wrong file
    csv = tmp_path / "AzureLLMInferenceTrace_code.csv"
    row = {"ContextTokens": "10", "GeneratedTokens": "2"} | {column: "-5"}
    csv.write_text(
        AZURE_HEADER
        + "2023-11-16 18:17:03.5,10,2\n"
        + f"2023-11-16 18:17:04.5,{row['ContextTokens']},{row['GeneratedTokens']}\n"
    )
    with pytest.raises(SimulationError, match=r"_code\.csv:3: not a valid Azure trace row"):
        azure_trace.read_azure_csv(csv)


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("option", ["--save-trace", "--json"])
def test_an_output_that_cannot_be_written_is_an_error_after_the_table(tmp_path, option):
    # was a FileNotFoundError traceback once the run was over (with --save-trace, before the
    # table was printed: the run's results were lost)
    target = tmp_path / "no-such-folder" / "out.json"
    code, text = run(*SHORT, option, str(target))
    assert code == 1, text
    assert "Traceback" not in text
    assert f"Error: {target}: cannot write: No such file or directory" in text
    assert "modelfleet " in text.split("Error:")[0]  # the table came first


def test_azure_trace_out_that_cannot_be_written_is_an_error(tmp_path):
    csv = tmp_path / "AzureLLMInferenceTrace_code.csv"
    csv.write_text(AZURE_HEADER + "2023-11-16 18:17:03.5,10,2\n")
    target = tmp_path / "no-such-folder" / "azure.jsonl"
    result = CliRunner().invoke(azure_trace.main, [f"{csv}=m", "--out", str(target)])
    assert result.exit_code == 1, result.output
    assert f"Error: {target}: cannot write: No such file or directory" in result.output


def test_a_saved_trace_replays_the_run_it_was_saved_from(tmp_path):
    # --save-trace rounded arrivals to the millisecond: the replay was another run
    # (on this trace least-connections' ttft max 1109.014 s, replayed 1109.015 s)
    saved, first, again = tmp_path / "t.jsonl", tmp_path / "r1.json", tmp_path / "r2.json"
    args = [EXAMPLE, "--policy", "least-connections", "--policy", "modelfleet"]
    code, text = run(*args, "--synthetic", "--duration", "600", "--save-trace", str(saved),
                     "--json", str(first))  # fmt: skip
    assert code == 0, text
    code, text = run(*args, "--trace", str(saved), "--json", str(again))
    assert code == 0, text
    before, after = json.loads(first.read_text()), json.loads(again.read_text())
    assert after["policies"] == before["policies"]
    assert before["policies"]["least-connections"]["ttft_max_s"] == 1109.014


# --------------------------------------------------------------------------- docs


def _documented_runs() -> list[tuple[str, list[str]]]:
    """Each ``$ modelfleet simulate ...`` block of docs/simulate.md: the command, its output."""
    text = (REPO / "docs" / "simulate.md").read_text()
    blocks = re.findall(r"```\n\$ (modelfleet simulate [^\n]*)\n(.*?)```", text, re.S)
    return [(command, output.splitlines()) for command, output in blocks]


@pytest.mark.parametrize(("command", "output"), _documented_runs())
def test_docs_simulate_md_shows_what_its_commands_print(monkeypatch, command, output):
    monkeypatch.chdir(REPO)
    code, text = run(*shlex.split(command)[2:])
    assert code == 0, text
    assert text.splitlines() == output


def test_docs_simulate_md_has_runs_to_check():
    assert len(_documented_runs()) == 2
