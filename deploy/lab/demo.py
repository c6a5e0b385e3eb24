"""``modelfleet demo up|down|status``: a working local fleet from one command.

``up`` goes from a bare Debian machine (after ``bash deploy/setup.sh``) to a router answering
with real llama.cpp inference, one step at a time, each with a time estimate:

1. preflight: root, podman, disk space, the router's and the file server's ports (checked by
   binding where they will listen);
2. the systemd host image (``deploy/lab/hostimage.sh``, cached);
3. the real llama-server build and the gemma3 GGUF (``deploy/lab/llama_build.sh``, cached);
4. three podman systemd hosts (``inventory/local.py``) on a podman network of the fleet's own
   (``modelfleet-<fleet>``): gpu-nv1 (2x RTX 4090 emulated, Ollama stand-in), gpu-amd1 (MI300X
   emulated, llama-swap stand-in), cpu-llama1 (real llama-server and the router, published on
   this machine's loopback, 127.0.0.1:11434 by default);
5. the stand-in releases and a file server on that network's gateway (``deploy/lab/localstack.py``);
6. the real deploy: ``pyinfra -y --json inventory/local.py deploy.py``;
7. a first request through the router, showing which host served it and why.

A second ``up`` finds everything in place and changes nothing. ``up`` that fails on a fleet it
created removes that fleet again; ``down`` removes every container of the fleet and its state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import click

from modelfleet.deploy.lab import localfleet, localstack, preflight

REPO = localstack.REPO
DEFAULT_FLEET = "demo"
ROUTER_HOST = "cpu-llama1"
ROUTER_PORT = 11434  # the router's port in its container, and on this machine's loopback
LOOPBACK = "127.0.0.1"
DEMO_MODEL = localstack.GEMMA
# The host image, the llama-server build, the model and three containers' writable layers.
NEED_DISK_GB = 4.0


class DemoError(RuntimeError):
    """A step failed; the message says what and how to fix it."""


def state_dir(fleet: str) -> Path:
    return REPO / ".fleet" / fleet


def network_name(fleet: str) -> str:
    """The fleet's own podman network (its bridge appears with the fleet's first container)."""
    return f"modelfleet-{fleet}"


def demo_hosts(router_port: int) -> list[localfleet.ContainerHost]:
    """inventory/local.py's hosts; the router host publishes the router on the loopback."""
    publish = (f"{LOOPBACK}:{router_port}:{ROUTER_PORT}",)
    return [
        dataclasses.replace(spec, publish=publish) if spec.name == ROUTER_HOST else spec
        for spec in localfleet.LOCAL_HOSTS
    ]


def published_router_port(fleet: str) -> int | None:
    """The loopback port a running fleet publishes its router on (None: not running)."""
    for host in localfleet.status(fleet):
        if host.name == ROUTER_HOST:
            for spec in host.labels.get(localfleet.PUBLISH_LABEL, "").split(","):
                address, _, rest = spec.partition(":")
                port, _, inner = rest.partition(":")
                if address == LOOPBACK and inner == str(ROUTER_PORT):
                    return int(port)
    return None


class Progress:
    """Numbered steps with an estimate before and the time taken after."""

    def __init__(self, total: int, out: TextIO = sys.stdout) -> None:
        self.total, self.number, self.out = total, 0, out

    @contextlib.contextmanager
    def step(self, title: str, estimate: str) -> Iterator[None]:
        self.number += 1
        self.say(f"[{self.number}/{self.total}] {title} ({estimate}) ...")
        started = time.monotonic()
        yield
        self.say(f"      done in {time.monotonic() - started:.0f} s")

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


@contextlib.contextmanager
def exclusive(fleet: str) -> Iterator[None]:
    """One ``up``/``down`` per fleet at a time."""
    directory = state_dir(fleet)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DemoError(
                f"another `modelfleet demo` command is working on fleet {fleet!r}; "
                "wait for it to finish"
            ) from None
        yield


def run_script(script: str, progress: Progress) -> None:
    """Run one of the set-up scripts, showing its progress lines indented."""
    proc = subprocess.Popen(
        ["bash", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        progress.say("      " + line.rstrip())
        tail = [*tail[-20:], line]
    if proc.wait() != 0:
        raise DemoError(f"{script} failed (exit {proc.returncode}); its last lines are above")


def check_ready(fleet: str, files_port: int, router_port: int) -> list[preflight.Problem]:
    """Every problem that would stop ``up``, found before it touches anything.

    Ports are checked by binding where the fleet will listen: the router on this machine's
    loopback, the file server on the fleet network's gateway. That gateway is not an address
    of this machine until the network's first container runs (and there is no network at all
    before the first ``up``), so nothing can hold the port there yet and the check passes;
    the file server's own bind reports a port taken in between.
    """
    podman = shutil.which("podman") is not None
    has_fleet = bool(localfleet.status(fleet)) if podman else False
    gateway = localfleet.network_gateway(network_name(fleet)) if podman else None
    checks = [
        preflight.check_root(),
        preflight.check_command("podman", "podman"),
        preflight.check_disk(localfleet.CACHE, NEED_DISK_GB if not has_fleet else 0.5),
        preflight.check_disk(Path("/var/lib/containers"), 1.0),
        preflight.check_port(
            LOOPBACK,
            router_port,
            "the router, published on this machine's loopback",
            ours=has_fleet and published_router_port(fleet) == router_port,
            flag="--router-port",
        ),
    ]
    if gateway:
        checks.append(
            preflight.check_port(
                gateway, files_port, "the fleet's file server", flag="--files-port"
            )
        )
    return preflight.run_checks(checks)


def run_pyinfra(env: dict[str, str], progress: Progress) -> dict[str, Any]:
    """The real deploy. pyinfra's own output goes to a log file; a line every few operations
    (and every error at once) goes to the screen; the JSON totals come back."""
    log = state_dir(env["MODELFLEET_FLEET"]) / "deploy.log"
    pyinfra = str(Path(sys.executable).with_name("pyinfra"))
    with log.open("w") as log_file, tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(
            [pyinfra, "-y", "--json", "inventory/local.py", "deploy.py"],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        operations = 0
        for line in proc.stderr:
            log_file.write(line)
            if line.startswith("--> Starting operation:"):
                operations += 1
                if operations % 15 == 0:
                    progress.say(f"      {operations} operations run ...")
            elif "Error" in line or "error:" in line:
                progress.say("      " + line.rstrip())
        proc.wait()
        stdout.seek(0)
        output = stdout.read()
    try:
        result: dict[str, Any] = json.loads(output[output.index("{") :])
    except ValueError:
        result = {}
    failed = result.get("results", {}).get("failed_hosts") or []
    if proc.returncode != 0 or failed:
        raise DemoError(
            f"the deploy failed (exit {proc.returncode}"
            + (f", hosts {', '.join(failed)}" if failed else "")
            + f"); pyinfra's log: {log}"
        )
    return result


def router_url(fleet: str) -> str:
    """The router as this machine reaches it: on the loopback port the fleet publishes."""
    port = published_router_port(fleet)
    if port is None:
        raise DemoError(
            f"the router host {ROUTER_HOST} of fleet {fleet!r} is not running (or publishes no "
            f"port on {LOOPBACK}; recreate it: modelfleet demo down, then up)"
        )
    return f"http://{LOOPBACK}:{port}"


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DemoError(f"the router at {url} did not become ready in {timeout_s:.0f} s")
        time.sleep(0.5)


@dataclass(frozen=True)
class FirstAnswer:
    text: str
    backend: str
    host: str
    reason: str
    seconds: float


def first_request(url: str, model: str = DEMO_MODEL) -> FirstAnswer:
    """One chat completion through the router; what answered it, per the router's headers."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello to the fleet."}],
        "max_tokens": 16,
        "temperature": 0,
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            answer = json.load(resp)
            headers = resp.headers
    except urllib.error.HTTPError as exc:
        raise DemoError(f"the router answered {exc.code}: {exc.read()[:300]!r}") from None
    return FirstAnswer(
        text=answer["choices"][0]["message"]["content"],
        backend=headers.get("X-Modelfleet-Backend", "?"),
        host=headers.get("X-Modelfleet-Host", "?"),
        reason=headers.get("X-Modelfleet-Reason", "?"),
        seconds=time.monotonic() - started,
    )


def next_steps(fleet: str, url: str) -> str:
    router = next(h.container for h in localfleet.status(fleet) if h.name == ROUTER_HOST)
    openai = json.dumps(
        {"model": DEMO_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}
    )
    ollama = json.dumps({"model": DEMO_MODEL, "prompt": "Hi", "options": {"num_predict": 16}})
    return f"""
The fleet is up. Try it:

  # OpenAI API
  curl -s {url}/v1/chat/completions -H 'Content-Type: application/json' -d '{openai}'

  # Ollama API (streams NDJSON by default)
  curl -s {url}/api/generate -d '{ollama}'

  # which backend holds which model, fleet-wide
  curl -s {url}/api/ps

Dashboard: {url}/dashboard
  admin token: podman exec {router} cat /etc/modelfleet/admin-token

Tear it all down: .venv/bin/modelfleet demo down{_fleet_flag(fleet)}
"""


def _fleet_flag(fleet: str) -> str:
    return "" if fleet == DEFAULT_FLEET else f" --fleet {fleet}"


def up(
    fleet: str,
    progress: Progress,
    files_port: int = localstack.FILES_PORT,
    router_port: int = ROUTER_PORT,
) -> FirstAnswer:
    problems = check_ready(fleet, files_port, router_port)
    if problems:
        raise DemoError(
            "cannot start the demo:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )
    with exclusive(fleet):
        existed = bool(localfleet.status(fleet))
        with progress.step("host image", "about 90 s the first time, cached after"):
            run_script("deploy/lab/hostimage.sh", progress)
        with progress.step("llama-server build and model", "about 5 min the first time"):
            run_script("deploy/lab/llama_build.sh", progress)
        try:
            with progress.step("container hosts", "about 15 s"):
                hosts = localfleet.up(
                    demo_hosts(router_port),
                    fleet=fleet,
                    progress=True,
                    network=network_name(fleet),
                )
                for host in hosts:
                    progress.say(f"      {host.name:<11} {host.address:<12} gpu={host.gpu}")
            files = state_dir(fleet) / "files"
            files.mkdir(parents=True, exist_ok=True)
            with progress.step("stand-in releases and file server", "a few seconds"):
                stack = localstack.build_stack_files(files)
            gateway = localfleet.network_gateway(network_name(fleet))
            if gateway is None:
                raise DemoError(f"podman network {network_name(fleet)} has no gateway address")
            with localstack.serve_files(files, host=gateway, port=files_port) as files_url:
                data_file = state_dir(fleet) / "data.json"
                catalog = localstack.demo_catalog(files_url)
                localstack.write_data(data_file, localstack.stack_data(files_url, stack, catalog))
                env = localstack.fleet_env(fleet, data_file, files_url)
                with progress.step("deploy (pyinfra)", "about 1 min the first time, 15 s after"):
                    result = run_pyinfra(env, progress)
                    totals = result["results"]["totals"]
                    progress.say(
                        f"      {totals['success']} operations changed something, "
                        f"{totals['no_change']} were already in place"
                    )
            url = router_url(fleet)
            with progress.step("first request through the router", "a few seconds"):
                wait_ready(url)
                answer = first_request(url)
        except BaseException:
            if not existed:
                progress.say(f"removing the half-built fleet {fleet!r} ...")
                localfleet.down(fleet)
                shutil.rmtree(state_dir(fleet), ignore_errors=True)
            raise
    progress.say(
        f"\nFirst request: model {DEMO_MODEL} answered in {answer.seconds:.2f} s by backend "
        f"{answer.backend} on host {answer.host}\n  why: {answer.reason}\n"
        f"  text (a base model, so expect babble): {answer.text!r}"
    )
    progress.say(next_steps(fleet, url))
    return answer


def down(fleet: str, progress: Progress) -> list[str]:
    with exclusive(fleet):
        removed = localfleet.down(fleet)
    shutil.rmtree(state_dir(fleet), ignore_errors=True)
    progress.say(
        f"removed {len(removed)} containers of fleet {fleet!r}: {', '.join(removed) or '-'}"
    )
    return removed


@click.group("demo")
def demo_command() -> None:
    """A local container fleet with a real llama.cpp backend behind the router."""


@demo_command.command("up")
@click.option("--fleet", default=DEFAULT_FLEET, show_default=True, help="Name of the fleet.")
@click.option(
    "--files-port",
    default=localstack.FILES_PORT,
    show_default=True,
    help="Port of the file server the hosts download from (on the fleet network's gateway).",
)
@click.option(
    "--router-port",
    default=ROUTER_PORT,
    show_default=True,
    help=f"Port on this machine's loopback ({LOOPBACK}) where the router is published.",
)
def up_command(fleet: str, files_port: int, router_port: int) -> None:
    """Bring the demo fleet up (safe to re-run: a second run changes nothing)."""
    try:
        up(fleet, Progress(total=6), files_port, router_port)
    except (DemoError, localfleet.LocalFleetError, localstack.StackError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; nothing half-built was left behind") from None


@demo_command.command("down")
@click.option("--fleet", default=DEFAULT_FLEET, show_default=True, help="Name of the fleet.")
def down_command(fleet: str) -> None:
    """Remove every container of the demo fleet and its state."""
    try:
        down(fleet, Progress(total=1))
    except (DemoError, localfleet.LocalFleetError) as exc:
        raise click.ClickException(str(exc)) from None


@demo_command.command("status")
@click.option("--fleet", default=DEFAULT_FLEET, show_default=True, help="Name of the fleet.")
def status_command(fleet: str) -> None:
    """The demo fleet's hosts and router."""
    try:
        hosts = localfleet.status(fleet)
        if not hosts:
            click.echo(f"fleet {fleet!r} is not running (start it: modelfleet demo up)")
            return
        for host in hosts:
            click.echo(f"{host.name:<11} {host.address:<12} {host.container}")
        url = router_url(fleet)
    except (DemoError, localfleet.LocalFleetError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"router: {url}  {router_summary(url)}")


def _answer(url: str) -> Any:
    """The JSON a GET of ``url`` answers, also with an error status (``/readyz``: 503)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        return json.load(exc)


def router_summary(url: str) -> str:
    """What the router says of itself: ready or not, the backends in rotation, the models
    loaded. Example: ``ready: 3 backends in rotation; loaded: gemma3-270m on cpu-llama1-cpu``."""
    try:
        ready = _answer(f"{url}/readyz")
        loaded = _answer(f"{url}/api/ps").get("models", [])
    except (OSError, ValueError) as exc:  # refused, reset, timed out, not JSON
        return f"not answering ({exc}; modelfleet demo up starts what stopped)"
    if not ready.get("ready"):
        return "not ready: no backend in rotation (all unhealthy or drained)"
    models = ", ".join(f"{m.get('name')} on {m.get('backend')}" for m in loaded) or "nothing"
    return f"ready: {len(ready.get('backends', []))} backends in rotation; loaded: {models}"
