"""`modelfleet simulate`: fleet from an inventory or router.yaml, traces from files or logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from modelfleet.deploy.simulate import (
    Request,
    RouterPolicy,
    SimFleet,
    SimulationError,
    Simulator,
    read_trace,
    simulate_command,
    trace_from_access_log,
    write_trace,
)
from modelfleet.router.config import RouterConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO / "inventory" / "example.py")

ROUTER_YAML = {
    "backends": [
        {
            "name": "gpu-01",
            "url": "http://10.0.0.1:11434",
            "vram_mb": 8192,
            "slots": 2,
            "models": [
                {"name": "small", "size_mb": 2000},
                {"name": "medium", "size_mb": 5000},
                {"name": "large", "size_mb": 7000},
            ],
        },
        {
            "name": "gpu-02",
            "url": "http://10.0.0.2:11434",
            "vram_mb": 8192,
            "slots": 2,
            "models": [{"name": "small", "size_mb": 2000}, {"name": "large", "size_mb": 7000}],
        },
    ]
}


@pytest.fixture
def router_yaml(tmp_path: Path) -> str:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(ROUTER_YAML))
    return str(path)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(simulate_command, list(args))
    return result.exit_code, result.output


def test_synthetic_trace_on_the_example_inventory(tmp_path):
    out = tmp_path / "result.json"
    code, text = run("--inventory", EXAMPLE, "--synthetic", "--duration", "300", "--json", str(out))
    assert code == 0, text
    for label in ("modelfleet", "round-robin", "least-connections", "least-models", "LP", "Belady"):
        assert label in text
    result = json.loads(out.read_text())
    assert set(result["policies"]) == {
        "modelfleet",
        "round-robin",
        "least-connections",
        "least-models",
    }
    # no request lost: each was served, or refused by the router's queue limits
    for policy in result["policies"].values():
        assert policy["requests"] + policy["rejected"] == result["requests"]


def test_the_inventory_can_come_as_plan_takes_it():
    """``modelfleet plan INVENTORY`` takes it without a flag; so does simulate."""
    args = ["--synthetic", "--duration", "60", "--policy", "modelfleet"]
    code, text = run(EXAMPLE, *args)
    assert code == 0, text
    assert "fleet example" in text
    code, text = run(EXAMPLE, "--inventory", "other.py", *args)
    assert code != 0 and "two inventories" in text


def test_trace_file_with_one_policy(tmp_path, router_yaml):
    trace = tmp_path / "trace.jsonl"
    write_trace(
        [Request(float(i), m) for i, m in enumerate(["small", "large", "medium", "small"] * 5)],
        trace,
    )
    code, text = run(
        "--router-config", router_yaml, "--trace", str(trace), "--policy", "modelfleet"
    )
    assert code == 0, text
    assert "modelfleet" in text and "round-robin" not in text
    assert "trace: 20 requests" in text


def test_integer_bound_is_printed_on_request(tmp_path, router_yaml):
    trace = tmp_path / "trace.jsonl"
    write_trace([Request(float(i), m) for i, m in enumerate(["large", "medium"] * 6)], trace)
    out = tmp_path / "result.json"
    args = ["--router-config", router_yaml, "--trace", str(trace), "--policy", "modelfleet"]
    code, text = run(*args)
    assert code == 0, text
    assert "integer" not in text
    code, text = run(*args, "--integer-bound", "--json", str(out))
    assert code == 0, text
    bound = json.loads(out.read_text())["lower_bound"]
    # large and medium fit the pooled 16 GB together: two loads, proven by both bounds
    assert (bound["lp"], bound["integer"], bound["integer_schedule"]) == (2, 2, 2)
    assert "bound, no request waiting (IP)" in text


def test_unknown_model_in_trace_lists_the_catalog(tmp_path, router_yaml):
    trace = tmp_path / "trace.jsonl"
    write_trace([Request(0.0, "small"), Request(1.0, "gigantic")], trace)
    code, text = run("--router-config", router_yaml, "--trace", str(trace))
    assert code != 0
    assert "gigantic" in text and "catalog: large, medium, small" in text


def test_bad_trace_line_is_named(tmp_path, router_yaml):
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"t": 0, "model": "small"}\n{"t": "soon", "model": "small"}\n')
    code, text = run("--router-config", router_yaml, "--trace", str(trace))
    assert code != 0
    assert f"{trace}:2" in text and "'t' must be a number" in text


def test_needs_exactly_one_fleet_and_one_trace(router_yaml):
    code, text = run("--synthetic")
    assert code != 0 and "--inventory or --router-config" in text
    code, text = run("--router-config", router_yaml)
    assert code != 0 and "--trace, --access-log or --synthetic" in text


def test_bad_router_config_names_the_file(tmp_path):
    bad = tmp_path / "router.yaml"
    bad.write_text("backends: [{name: x}]\n")
    code, text = run("--router-config", str(bad), "--synthetic")
    assert code != 0 and str(bad) in text and "url" in text


def test_access_log_becomes_a_trace(tmp_path, router_yaml):
    log = tmp_path / "access.jsonl"
    lines = [
        {"ts": 1000.5, "method": "GET", "path": "/healthz", "status": 200},
        {"ts": 1002.0, "model": "small", "duration_s": 1.5, "prompt_tokens": 12,
         "completion_tokens": 30, "request_id": "a"},
        {"ts": 1010.0, "model": "large", "duration_ms": 2000,
         "usage": {"prompt_tokens": 5, "completion_tokens": 7}},
        {"ts": 1003.0, "model": "small"},
    ]  # fmt: skip
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    trace = trace_from_access_log(log)
    assert trace == [
        Request(0.0, "small", 12, 30, "a"),
        Request(2.5, "small", 256, 128, "l4"),
        Request(7.5, "large", 5, 7, "l3"),
    ]
    saved = tmp_path / "trace.jsonl"
    code, text = run(
        "--router-config", router_yaml, "--access-log", str(log), "--save-trace", str(saved)
    )
    assert code == 0, text
    assert len(saved.read_text().splitlines()) == 3


def test_router_access_log_lines_as_docs_router_md_shows_them(tmp_path):
    # The example line of docs/router.md, a load-only line and a refusal without token counts.
    log = tmp_path / "access.jsonl"
    log.write_text(
        '{"ts":1795318368.0457,"kind":"inference","request_id":"9bbdbb7d2911417e","api":"ollama",'
        '"path":"/api/generate","model":"qwen2.5:0.5b","backend":"o","reason":"load-fits",'
        '"status":200,"stream":false,"latency_s":0.061,"duration_s":0.061,"ttft_s":0.061,'
        '"queue_s":0.0,"prompt_tokens":1,"completion_tokens":11,"attempts":1,"loaded":true,'
        '"error":null}\n'
        '{"ts":1795318369.0,"kind":"load","request_id":"x","model":"qwen2.5:0.5b","status":200}\n'
        '{"ts":1795318370.5,"kind":"inference","request_id":"r2","model":"qwen2.5:0.5b",'
        '"status":429,"duration_s":0.5,"prompt_tokens":null,"completion_tokens":null}\n'
    )
    trace = trace_from_access_log(log)
    assert [(r.id, r.prompt_tokens, r.output_tokens) for r in trace] == [
        ("9bbdbb7d2911417e", 1, 11),
        ("r2", 256, 128),
    ]
    assert trace[1].t == pytest.approx(1795318370.0 - (1795318368.0457 - 0.061))


def test_access_log_without_requests_is_an_error(tmp_path):
    log = tmp_path / "access.jsonl"
    log.write_text('{"ts": 1, "path": "/metrics"}\n')
    with pytest.raises(SimulationError, match="no inference requests"):
        trace_from_access_log(log)


def _alternating_trace(tmp_path: Path) -> Path:
    trace = tmp_path / "trace.jsonl"
    write_trace(
        [Request(float(i), m) for i, m in enumerate(["small", "large", "medium", "small"] * 5)],
        trace,
    )
    return trace


def _modelfleet_loads(config: dict, trace: Path) -> int:
    """The router's policy with ``config``'s knobs, run directly (not through the CLI)."""
    router_config = RouterConfig.model_validate(config)
    sim = Simulator(
        SimFleet.from_router_config(router_config), RouterPolicy(router_config), read_trace(trace)
    )
    return sim.run().loads


def test_the_modelfleet_row_runs_with_the_fleets_policy_knobs(tmp_path, router_yaml):
    # 1.5 GB of headroom on 8 GB hosts: small and medium no longer fit side by side, so the
    # knob changes what the router does on this trace.
    trace = _alternating_trace(tmp_path)
    with_headroom = ROUTER_YAML | {"policy": {"headroom_mb": 1500}}
    expected = _modelfleet_loads(with_headroom, trace)
    assert expected != _modelfleet_loads(ROUTER_YAML, trace)

    tuned = tmp_path / "tuned.yaml"
    tuned.write_text(yaml.safe_dump(with_headroom))
    runs = {
        "router.yaml policy": ("--router-config", str(tuned)),
        "--set": ("--router-config", router_yaml, "--set", "headroom_mb=1500"),
    }
    for label, fleet_args in runs.items():
        out = tmp_path / "result.json"
        code, text = run(
            *fleet_args, "--trace", str(trace), "--policy", "modelfleet", "--json", str(out)
        )
        assert code == 0, text
        assert "policy knobs (others default): headroom_mb=1500" in text, label
        result = json.loads(out.read_text())
        assert result["policies"]["modelfleet"]["cold_loads"] == expected, label
        assert result["policy_config"]["headroom_mb"] == 1500


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("bogus=1", "unknown policy knob 'bogus' (known: headroom_mb,"),
        ("max_hold_s=-1", "max_hold_s: Input should be greater than or equal to 0"),
        ("max_hold_s=soon", "max_hold_s: Input should be a valid number"),
        ("max_hold_s", "'max_hold_s': expected KNOB=VALUE"),
    ],
)
def test_a_bad_policy_knob_is_named(router_yaml, setting, message):
    code, text = run("--router-config", router_yaml, "--synthetic", "--set", setting)
    assert code != 0
    assert "--set" in text and message in text


def test_the_modelfleet_row_applies_the_router_queue_limits(tmp_path):
    # "large" fits on one backend at a time per host; with no waiting allowed (max_per_model
    # 0) the router refuses what it cannot place at once, as the live router answers 429.
    config = ROUTER_YAML | {"queue": {"max_per_model": 0}}
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    trace = tmp_path / "trace.jsonl"
    write_trace([Request(0.0, "large", output_tokens=500) for _ in range(6)], trace)
    out = tmp_path / "result.json"
    code, text = run("--router-config", str(path), "--trace", str(trace), "--json", str(out))
    assert code == 0, text
    assert "modelfleet router queue: at most 0 waiting per model, 120 s deadline" in text
    policies = json.loads(out.read_text())["policies"]
    router = policies["modelfleet"]
    assert router["rejected"] > 0
    assert router["requests"] + router["rejected"] == 6
    assert router["rejected_reasons"] == {"queue-full": router["rejected"]}
    assert policies["round-robin"]["rejected"] == 0  # the backend queues what it is sent


def test_a_llama_server_backend_loads_as_deployed_and_aliases_are_their_models(tmp_path):
    # roles/llama_server runs llama-server in router mode, which loads models on demand; a
    # trace may name a model by an alias, as clients do
    config = {
        "backends": [
            {
                "name": "cpu-llama",
                "url": "http://10.0.0.3:8080",
                "kind": "llama-server",
                "vram_mb": 4096,
                "max_loaded": 1,
                "models": [
                    {"name": "gemma3-270m", "size_mb": 242, "aliases": ["tiny"]},
                    {"name": "qwen2.5-0.5b", "size_mb": 379},
                ],
            }
        ]
    }
    router_yaml = tmp_path / "router.yaml"
    router_yaml.write_text(yaml.safe_dump(config))
    trace = tmp_path / "trace.jsonl"
    write_trace(
        [Request(0.0, "gemma3-270m"), Request(5.0, "tiny"), Request(10.0, "qwen2.5-0.5b")], trace
    )
    code, text = run("--router-config", str(router_yaml), "--trace", str(trace), "--policy",
                     "modelfleet", "--json", str(tmp_path / "out.json"))  # fmt: skip
    assert code == 0, text
    row = json.loads((tmp_path / "out.json").read_text())["policies"]["modelfleet"]
    # gemma3 once (the alias finds it resident), qwen once, one eviction (max_loaded 1)
    assert (row["cold_loads"], row["evictions"], row["requests"]) == (2, 1, 3), row


@pytest.mark.parametrize(
    ("option", "value", "range_"),
    [
        ("--rate", "0", "x>0"),  # was a ZeroDivisionError traceback
        ("--rate", "-1", "x>0"),  # was an endless loop: arrival times ran backwards
        ("--duration", "0", "x>0"),
        ("--load-gbps", "0", "x>0"),  # was a ZeroDivisionError traceback
        ("--mem-bandwidth-gbps", "0", "x>0"),
        ("--load-fixed-s", "-1", "x>=0"),
        ("--keep-alive", "-5", "x>=0"),
    ],
)
def test_rates_durations_and_bandwidths_out_of_range_are_usage_errors(option, value, range_):
    code, text = run(EXAMPLE, "--synthetic", option, value)
    assert code == 2
    assert f"Invalid value for '{option}'" in text and f"is not in the range {range_}" in text


def test_a_short_synthetic_trace_keeps_its_bursts_inside_it(tmp_path):
    out = tmp_path / "trace.jsonl"
    code, text = run(EXAMPLE, "--synthetic", "--duration", "10", "--save-trace", str(out))
    assert code == 0, text
    times = [request.t for request in read_trace(str(out))]
    assert times and max(times) < 10
