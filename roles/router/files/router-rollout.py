"""Roll a router release and config out on this host, keeping the old one if the new one fails.

Run by the router role as root with the *new* release's Python (it has PyYAML):

    /opt/modelfleet/releases/<id>/bin/python /usr/local/lib/modelfleet/router-rollout.py \
        --release /opt/modelfleet/releases/<id> --root /opt/modelfleet \
        --config /etc/modelfleet/router.yaml --candidate /etc/modelfleet/router.yaml.next \
        --service modelfleet-router --user modelfleet --token /etc/modelfleet/admin-token \
        --side-port 18434 [--call-host 10.0.0.5]

1. The candidate (new release + new config) starts as a transient unit on a side port, with the
   same user and credentials as the real service, and must answer ``/readyz`` with 200.
   If it does not, nothing else changes: the running service keeps the old release and config.
2. The ``current`` symlink and the config are switched (each by an atomic rename). A new release
   (or ``--restart``: the unit or a secret changed too) restarts the service; a new config alone
   is re-read by the running router (``POST /admin/reload``), so in-flight requests carry on.
   ``/readyz`` must then answer on the real port. If it does not, both are switched back, the
   service restarted on the old pair, and the script fails.
3. The service's listening socket belongs to ``<service>.socket``: a restart lets the old
   process finish its requests in flight (it stops accepting on SIGTERM) while new connections
   wait in the socket's backlog for the new process. Only the first switch to socket
   activation, or a new listen address (host or port), binds the socket again with the service
   stopped.
4. The router is called where it listens: ``--call-host`` (the deploy passes its bind address,
   or 127.0.0.1, the default, when it listens on every address; ``roles/addresses.py``). The
   candidate listens on 127.0.0.1 and is called there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml


def log(message: str) -> None:
    print(f"router-rollout: {message}", flush=True)


def readyz(address: str, timeout_s: float) -> tuple[bool, str]:
    """Poll ``http://<address>/readyz`` until 200 or the timeout; return (ok, last answer)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}/readyz", timeout=2) as resp:
                return True, f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    return False, last


def admin_reload(address: str, token: str) -> tuple[bool, str]:
    """Ask the running router at ``address`` (host:port) to re-read its config file."""
    request = urllib.request.Request(
        f"http://{address}/admin/reload",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return True, f"reload HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"reload HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}"
    except OSError as exc:
        return False, f"reload failed: {exc}"


def listen(config: dict) -> str:
    """The config's ``listen`` (host:port): what the socket binds."""
    return str(config.get("listen", "127.0.0.1:11434"))


def listen_port(config: dict) -> int:
    return int(listen(config).rpartition(":")[2])


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=check)


def journal_tail(unit: str) -> str:
    done = subprocess.run(
        ["journalctl", "-u", unit, "-n", "15", "--no-pager", "-o", "cat"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def runtime_dir(unit: str) -> str:
    return f"/run/{unit}/"


def prune_releases(root: Path, keep: int) -> None:
    """Remove the oldest releases beyond ``keep``; never the live one."""
    live = (root / "current").resolve()
    releases = sorted(
        (p for p in (root / "releases").iterdir() if p.is_dir() and not p.name.endswith(".wheels")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in releases[keep:]:
        if old.resolve() != live:
            shutil.rmtree(old, ignore_errors=True)
            log(f"removed old release {old.name}")


def check_candidate(args: argparse.Namespace, config: dict) -> tuple[bool, str]:
    unit = f"{args.service}-candidate"
    side = dict(config)
    side["listen"] = f"127.0.0.1:{args.side_port}"
    # The unit copies the root-only token into its RuntimeDirectory (/run/<unit>/) before it
    # starts; do the same for the candidate, in its own directory.
    live_run, side_run = runtime_dir(args.service), Path(runtime_dir(unit))
    shutil.rmtree(side_run, ignore_errors=True)
    side_run.mkdir(mode=0o700)
    shutil.chown(side_run, args.user, args.user)
    token_copy = side_run / "admin-token"
    shutil.copyfile(args.token, token_copy)
    token_copy.chmod(0o400)
    shutil.chown(token_copy, args.user, args.user)
    token_file = side.get("admin_token_file")
    if isinstance(token_file, str) and token_file.startswith(live_run):
        side["admin_token_file"] = str(token_copy)
    side_path = Path(f"{args.candidate}.side")
    side_path.write_text(yaml.safe_dump(side, sort_keys=False))
    side_path.chmod(0o640)
    shutil.chown(side_path, "root", args.user)
    systemctl("stop", unit, check=False)
    systemctl("reset-failed", unit, check=False)
    start = subprocess.run(
        [
            "systemd-run",
            f"--unit={unit}",
            f"--property=User={args.user}",
            # as the unit has it: the candidate opens the same access log, if one is set
            "--property=LogsDirectory=modelfleet",
            "--property=LogsDirectoryMode=0750",
            "--collect",
            str(Path(args.release) / "bin" / "modelfleet-router"),
            "--config",
            str(side_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode != 0:
        return False, f"could not start the candidate: {start.stderr.strip()}"
    try:
        ok, answer = readyz(f"127.0.0.1:{args.side_port}", args.timeout)
        if not ok:
            answer = f"{answer}\n{journal_tail(unit)}"
        return ok, answer
    finally:
        systemctl("stop", unit, check=False)
        side_path.unlink(missing_ok=True)
        shutil.rmtree(side_run, ignore_errors=True)


def socket_listening(service: str) -> bool:
    return systemctl("is-active", "--quiet", f"{service}.socket", check=False).returncode == 0


def socket_activated(service: str) -> bool:
    """Whether the service has its socket unit (it has, once the router role wrote it)."""
    return Path(f"/etc/systemd/system/{service}.socket").exists()


def restart(service: str, rebind: bool) -> None:
    """Restart the service; its socket unit too when it must bind (again)."""
    socket_unit = f"{service}.socket"
    if not socket_activated(service):
        systemctl("restart", service, check=False)  # a unit without socket activation
        return
    systemctl("enable", socket_unit, check=False)
    if rebind:
        log(f"binding {socket_unit} (again): the service stops meanwhile")
        systemctl("stop", service, check=False)
        systemctl("restart", socket_unit, check=False)
        systemctl("start", service, check=False)
    else:
        # The old process finishes its requests in flight; new connections wait in the
        # socket's backlog for the new process.
        systemctl("restart", service, check=False)


def switch(link: Path, target: str, config: Path, new_config: Path) -> None:
    tmp_link = link.with_name(link.name + ".new")
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(target)
    os.replace(tmp_link, link)
    os.replace(new_config, config)


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--release", "--root", "--config", "--candidate", "--service", "--user"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--side-port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--keep", type=int, default=3)
    # The unit or a secret it hands the service at start (admin token, Redis password) changed
    # too: a reload would keep the old ones, so restart even when only the config changed.
    parser.add_argument("--restart", action="store_true")
    # Where the router is reached on this host: its bind address; 127.0.0.1 for a wildcard.
    parser.add_argument("--call-host", default="127.0.0.1")
    args = parser.parse_args()

    candidate = yaml.safe_load(Path(args.candidate).read_text())
    ok, answer = check_candidate(args, candidate)
    if not ok:
        log(f"the candidate failed /readyz on port {args.side_port}: {answer}")
        log("the service keeps its current release and config")
        return 1
    log(f"candidate ready on side port {args.side_port} ({answer})")

    link = Path(args.root) / "current"
    config = Path(args.config)
    old_target = os.readlink(link) if link.is_symlink() else None
    backup = Path(f"{args.config}.previous")
    if config.exists():
        shutil.copy2(config, backup)
    same_release = old_target == args.release
    running = systemctl("is-active", "--quiet", args.service, check=False).returncode == 0
    address = f"{args.call_host}:{listen_port(candidate)}"
    # The whole listen address (host and port): a new bind address on the same port must bind
    # the socket again, and a running router cannot take it with a reload.
    same_listen = backup.exists() and listen(yaml.safe_load(backup.read_text())) == listen(
        candidate
    )
    if same_release and running and same_listen and not args.restart:
        # Only the config changed: the running router re-reads it (POST /admin/reload) and
        # keeps its in-flight requests and learned state.
        switch(link, args.release, config, Path(args.candidate))
        ok, answer = admin_reload(address, Path(args.token).read_text().strip())
        if ok:
            ok, answer = readyz(address, args.timeout)
        action = "reloaded its config"
    else:
        switch(link, args.release, config, Path(args.candidate))
        systemctl("daemon-reload")
        systemctl("enable", args.service)
        restart(args.service, rebind=not (same_listen and socket_listening(args.service)))
        ok, answer = readyz(address, args.timeout)
        action = f"serves release {Path(args.release).name}"
    if ok:
        log(f"{args.service} {action} ({answer})")
        backup.unlink(missing_ok=True)
        prune_releases(Path(args.root), args.keep)
        return 0

    log(f"{args.service} failed after the switch: {answer}\n{journal_tail(args.service)}")
    if old_target is None or not backup.exists():
        log("no previous release to go back to")
        return 1
    shutil.copy2(backup, args.candidate)
    switch(link, old_target, config, Path(args.candidate))
    restart(args.service, rebind=not same_listen)
    # The socket binds what its unit says: the deploy wrote the new unit before this script
    # ran, so the old pair serves on the new listen address (the old config's only without a
    # socket unit, where the router binds it itself).
    if not socket_activated(args.service):
        address = f"{args.call_host}:{listen_port(yaml.safe_load(config.read_text()))}"
    back_ok, back_answer = readyz(address, args.timeout)
    log(f"rolled back to {Path(old_target).name}: /readyz {back_answer}")
    return 1 if back_ok else 2


if __name__ == "__main__":
    sys.exit(main())
