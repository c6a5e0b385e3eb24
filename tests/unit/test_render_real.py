"""The rendered llama-server presets, served by the REAL llama-server (router mode).

Needs the cached build and GGUF from ``bash deploy/lab/llama_build.sh``; skips without them
(fails instead when MODELFLEET_REQUIRE_REAL is set, as in tests/real).
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from modelfleet.deploy.inventory import load_fleet
from modelfleet.deploy.lab import llama
from modelfleet.deploy.plan import hardware_from_overrides, plan_fleet
from modelfleet.deploy.render import render_host

pytestmark = pytest.mark.real

GGUF = {
    "url": "http://10.88.0.1:8765/gemma-3-270m-q4_k_m.gguf",
    "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    "file": "gemma-3-270m-q4_k_m.gguf",
}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def test_rendered_presets_serve_with_real_llama_server(write_inventory, tmp_path: Path) -> None:
    missing = llama.missing_artifacts()
    if missing:
        if os.environ.get("MODELFLEET_REQUIRE_REAL", "") not in ("", "0"):
            pytest.fail(f"MODELFLEET_REQUIRE_REAL is set but missing: {missing}")
        pytest.skip(f"not built ({', '.join(missing)}): run `bash deploy/lab/llama_build.sh`")
    model_dir = llama.gguf_model_path().parent  # type: ignore[union-attr]
    entry = {
        "gguf": GGUF,
        "size_mb": 242,
        "kv_mb_per_1k_ctx": 18,
        "ctx": 512,
        "groups": ["cpu"],
        "llama_args": ["--no-jinja", "--chat-template", "gemma", "--threads", "1"],
    }
    path = write_inventory(
        f'cpu = [("cpu-1", {{"backend": "llama-server", "models_dir": "{model_dir}", '
        '"gpus": [], "ram_mb": 4096, "ram_headroom_mb": 1024})]\n',
        {"all": f"model_catalog = {{'gemma-a': {entry!r}, 'gemma-b': {entry!r}}}\n"},
    )
    fleet = load_fleet(path)
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    (inst,) = plan.instances
    files = render_host(plan, plan.host("cpu-1"), {"llama_server_config_dir": str(tmp_path)})
    (preset,) = (f for f in files if f.path.endswith(".ini"))
    Path(preset.path).write_text(preset.content)

    with llama.start_llama_server(
        models_preset=Path(preset.path), models_max=inst.max_loaded, log_dir=tmp_path
    ) as server:
        listed = {m["id"]: m["status"]["value"] for m in _get(server.url + "/models")["data"]}
        assert listed == {"gemma-a": "unloaded", "gemma-b": "unloaded"}
        body = json.dumps(
            {
                "model": "gemma-b",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4,
                "temperature": 0,
            }
        ).encode()
        request = urllib.request.Request(
            server.url + "/v1/chat/completions",
            data=body,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as resp:
            reply = json.loads(resp.read())
        assert reply["model"] == "gemma-b" and reply["choices"][0]["message"]["role"] == "assistant"
        status = {m["id"]: m["status"] for m in _get(server.url + "/models")["data"]}
        assert status["gemma-b"]["value"] == "loaded"
        args = status["gemma-b"]["args"]
        assert args[args.index("--ctx-size") + 1] == "512"
        assert args[args.index("--parallel") + 1] == "1"
