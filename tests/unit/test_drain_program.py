"""roles/drain.ADMIN_PROGRAM, the program the deploy runs on the router host, against a fake
router admin API: drain waits for the backend's requests in flight; wait (no drain) waits only
for those on the models that leave."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from modelfleet.roles.drain import ADMIN_PROGRAM


async def run_program(port: int, token: Path, action: str, models: str) -> str:
    address = f"127.0.0.1:{port}"  # what router_admin passes: local_host(bind):port
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ADMIN_PROGRAM, action, "nv", address, str(token), "30", models,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().strip()


async def fake_router(in_flight: dict[str, int], calls: list[str]) -> web.AppRunner:
    async def state(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer s3cret"
        models: list[dict[str, Any]] = [{"model": m, "in_flight": n} for m, n in in_flight.items()]
        # Each poll finishes one request (the model with most in flight).
        busiest = max(in_flight, key=in_flight.__getitem__)
        in_flight[busiest] = max(0, in_flight[busiest] - 1)
        total = sum(m["in_flight"] for m in models)
        return web.json_response(
            {"backends": [{"name": "nv", "in_flight": total, "models": models}]}
        )

    async def admin(request: web.Request) -> web.Response:
        calls.append(request.match_info["action"])
        return web.json_response({"backend": "nv", "in_flight": sum(in_flight.values())})

    app = web.Application()
    app.router.add_get("/admin/state", state)
    app.router.add_post("/admin/backends/nv/{action}", admin)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def port_of(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


async def program_against_fake_router(
    tmp_path: Path, in_flight: dict[str, int], action: str, models: str
) -> tuple[str, list[str]]:
    """Run the program once against a fake router; its printed line and the admin calls."""
    token = tmp_path / "admin-token"
    token.write_text("s3cret\n")
    calls: list[str] = []
    runner = await fake_router(in_flight, calls)
    try:
        return await run_program(port_of(runner), token, action, models), calls
    finally:
        await runner.cleanup()


async def test_drain_waits_for_every_request_on_the_backend(tmp_path: Path) -> None:
    in_flight = {"gemma": 2, "qwen": 1}
    line, calls = await program_against_fake_router(tmp_path, in_flight, "drain", "")
    assert calls == ["drain"]
    assert in_flight == {"gemma": 0, "qwen": 0}
    assert line.startswith("backend nv drained: 3 requests in flight then, all finished")
    assert "s3cret" not in line


async def test_wait_only_for_the_leaving_models_and_never_drains(tmp_path: Path) -> None:
    in_flight = {"gemma": 1, "qwen": 5}
    line, calls = await program_against_fake_router(tmp_path, in_flight, "wait", "gemma")
    assert calls == []  # the backend keeps serving its other models
    assert in_flight["gemma"] == 0
    assert line.startswith("backend nv (gemma) no longer routed: 1 requests in flight then")


async def test_no_router_yet_is_nothing_to_wait_for(tmp_path: Path) -> None:
    line = await run_program(9, tmp_path / "missing-token", "wait", "gemma")
    assert line.startswith("no router on the router host yet")
