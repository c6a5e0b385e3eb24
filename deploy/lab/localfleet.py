"""The local container fleet: podman systemd containers that stand in for GPU hosts.

Each host is a container of the host image (``deploy/lab/hostimage.sh``) running systemd as PID 1
and sshd, with its own address on podman's default bridge (10.88.0.0/16). GPUs are emulated by
the stand-in tools from ``tests/fakegpu/`` (nvidia-smi, amd-smi, rocm-smi, lspci, mokutil),
configured from a profile in ``deploy/lab/fakegpu/profiles.json`` (e.g. ``rtx4090x2``, ``mi300x``).

Every container carries the label ``modelfleet.fleet=<fleet>``, so :func:`down` finds all of
them; names are ``<fleet>-<host>``. Networking: this machine reaches a container at its address
(``10.88.x.y``); a container reaches servers on this machine only through the bridge's host side,
``10.88.0.1`` (:data:`BRIDGE_GATEWAY`), so a server the hosts must reach (a release file server,
the stand-in apt repository) binds there, not to 127.0.0.1.

Example::

    from modelfleet.deploy.lab import localfleet
    hosts = localfleet.up([localfleet.ContainerHost("gpu-nv1", gpu="rtx4090x2")], fleet="demo")
    hosts[0].address                  # "10.88.0.12"
    localfleet.down("demo")           # removes every container labelled modelfleet.fleet=demo

Command line: ``python -m modelfleet.deploy.lab.localfleet up|down|status [--fleet NAME]``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

REPO = Path(__file__).resolve().parents[2]
FAKEGPU_DIR = Path(__file__).resolve().parent / "fakegpu"
IMAGE = os.environ.get("MODELFLEET_IMAGE", "localhost/modelfleet-host:bookworm")
CACHE = Path(os.environ.get("MODELFLEET_CACHE", Path.home() / ".cache" / "modelfleet"))
SSH_KEY = CACHE / "ssh" / "id_ed25519"
FLEET_LABEL = "modelfleet.fleet"
HOST_LABEL = "modelfleet.host"
GPU_LABEL = "modelfleet.gpu"
GPU_DRIVER_LABEL = "modelfleet.gpu-driver"
# Labels that record how a host was started: `up` refuses to reuse a container that differs.
PUBLISH_LABEL = "modelfleet.publish"
CAPS_LABEL = "modelfleet.caps"
SPEC_LABELS = (GPU_LABEL, GPU_DRIVER_LABEL, PUBLISH_LABEL, CAPS_LABEL)
# What keepalived needs on a router host: add/remove the VIP, send VRRP and gratuitous ARP.
VRRP_CAPS = ("NET_ADMIN", "NET_RAW")
DEFAULT_FLEET = "modelfleet"
# The host side of podman's default bridge: how containers reach servers on this machine.
BRIDGE_GATEWAY = "10.88.0.1"
# Containers on another podman network reach this machine at that network's gateway.
DEFAULT_NETWORK = "podman"
SYSTEMD_TIMEOUT_S = 120.0

# Where the stand-in GPU tools go on a host; /usr/local/bin comes before /usr/bin in PATH.
FAKEGPU_LIB = "/usr/local/lib/modelfleet-fakegpu"
FAKEGPU_CONFIG = "/etc/modelfleet/fakegpu.json"
GPU_TOOLS = {"nvidia": ("nvidia-smi",), "amd": ("amd-smi", "rocm-smi")}
ALWAYS_TOOLS = ("lspci", "mokutil")


class LocalFleetError(RuntimeError):
    """The local fleet cannot be brought up or inspected; the message says what and how to fix."""


@dataclass(frozen=True)
class ContainerHost:
    """One container host to bring up.

    + name: host name (also the container's hostname); the container is ``<fleet>-<name>``
    + gpu: a profile in ``deploy/lab/fakegpu/profiles.json`` (``None``: no GPU emulation at all)
    + gpu_driver: install the vendor tools (nvidia-smi / amd-smi); ``False`` emulates a host
      whose driver is not installed yet (lspci still lists the GPUs), for the driver roles
    + secure_boot: what ``mokutil --sb-state`` reports
    + publish: podman ``--publish`` specs, e.g. ``127.0.0.1:11434:11434`` (this machine's
      loopback port 11434 reaches the container's port 11434)
    + capabilities: extra ``--cap-add`` capabilities, e.g. :data:`VRRP_CAPS` for keepalived
    """

    name: str
    gpu: str | None = None
    gpu_driver: bool = True
    secure_boot: bool = False
    publish: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunningHost:
    """A container host that is up: what an inventory needs."""

    name: str
    container: str
    address: str
    fleet: str
    gpu: str | None = None
    labels: dict[str, str] = field(default_factory=dict, compare=False)


def load_profiles() -> dict[str, dict[str, Any]]:
    """The GPU emulation profiles, by name (``deploy/lab/fakegpu/profiles.json``)."""
    raw: dict[str, Any] = json.loads((FAKEGPU_DIR / "profiles.json").read_text())
    return {name: value for name, value in raw.items() if not name.startswith("_")}


# --------------------------------------------------------------------------- podman helpers


def _podman(*args: str, check: bool = True, timeout: float = 120.0) -> str:
    try:
        done = subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise LocalFleetError(
            "podman is not installed; run: sudo bash deploy/setup.sh --all"
        ) from None
    except subprocess.TimeoutExpired:
        raise LocalFleetError(f"podman {shlex.join(args)} took over {timeout:.0f} s") from None
    if check and done.returncode != 0:
        raise LocalFleetError(
            f"podman {shlex.join(args)} failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def _container_name(fleet: str, host: str) -> str:
    return f"{fleet}-{host}"


def _inspect(container: str) -> dict[str, Any] | None:
    out = _podman("container", "inspect", container, check=False)
    items = json.loads(out) if out.strip() else []
    return items[0] if items else None


def _address(info: dict[str, Any]) -> str:
    address = str(info.get("NetworkSettings", {}).get("IPAddress") or "")
    if not address:
        for net in info.get("NetworkSettings", {}).get("Networks", {}).values():
            address = net.get("IPAddress") or address
    return address


def ensure_ssh_key() -> Path:
    """The fleet's ssh key pair (created once under ``$MODELFLEET_CACHE/ssh``)."""
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = SSH_KEY.with_suffix(".partial")
        for path in (partial, partial.with_suffix(".partial.pub")):
            path.unlink(missing_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "modelfleet-local",
                "-f",
                partial,
            ],
            check=True,
        )
        partial.with_suffix(".partial.pub").rename(SSH_KEY.with_suffix(".pub"))
        partial.rename(SSH_KEY)
    return SSH_KEY


def _check_image(image: str) -> None:
    if subprocess.run(["podman", "image", "exists", image], check=False).returncode != 0:
        raise LocalFleetError(
            f"host image {image} is missing; build it with: sudo bash deploy/setup.sh --all "
            "(about 90 s once, then cached)"
        )


# --------------------------------------------------------------------------- up / down / status


def up(
    hosts: Sequence[ContainerHost],
    fleet: str = DEFAULT_FLEET,
    image: str = IMAGE,
    progress: bool = False,
    network: str = DEFAULT_NETWORK,
) -> list[RunningHost]:
    """Start (or reuse) one systemd container per host and wait until systemd runs in each.

    ``network`` is the podman network the hosts join: podman's default bridge, or a network of
    the fleet's own, made here when missing (see :func:`ensure_network`) and removed by
    :func:`down`. A second ``up`` with the same hosts reuses the running containers and changes
    nothing.
    If any host fails, the containers this call created are removed again (no half fleet).
    Raises LocalFleetError naming the host and the problem.
    """
    if os.geteuid() != 0:
        raise LocalFleetError("the local fleet runs rootful podman: run as root")
    profiles = load_profiles()
    _validate(hosts, profiles, fleet)
    _check_image(image)
    key = ensure_ssh_key()
    if network != DEFAULT_NETWORK:
        ensure_network(network, fleet)
    created: list[str] = []
    try:
        for spec in hosts:
            container = _container_name(fleet, spec.name)
            info = _inspect(container)
            if info is None:
                _run_container(spec, container, fleet, image, key, profiles, network)
                created.append(container)
                _say(progress, f"created {container}")
            elif info["Config"]["Labels"].get(FLEET_LABEL) != fleet:
                raise LocalFleetError(
                    f"host {spec.name}: a container named {container} exists but is not part of "
                    f"fleet {fleet!r} (no {FLEET_LABEL}={fleet} label); remove it or pick "
                    "another fleet name"
                )
            elif _differs(spec, info["Config"]["Labels"]):
                labels = info["Config"]["Labels"]
                raise LocalFleetError(
                    f"host {spec.name}: container {container} was started with other GPU "
                    f"emulation, published ports or capabilities "
                    f"({labels.get(GPU_LABEL) or 'no GPU'}; published: "
                    f"{labels.get(PUBLISH_LABEL) or 'none'}; capabilities: "
                    f"{labels.get(CAPS_LABEL) or 'none'}); tear the fleet down "
                    f"first: python -m modelfleet.deploy.lab.localfleet down --fleet {fleet}"
                )
            elif not info["State"]["Running"]:
                _podman("start", container)
                _say(progress, f"started {container}")
        started = time.monotonic()
        for spec in hosts:
            container = _container_name(fleet, spec.name)
            _wait_for_systemd(spec, container)
            if container not in created:
                _check_ssh_key(spec, container, key, fleet)
        _say(
            progress, f"systemd running in {len(hosts)} hosts ({time.monotonic() - started:.1f} s)"
        )
        for spec in hosts:
            _install_fakegpu(spec, _container_name(fleet, spec.name), profiles)
    except BaseException:
        if created:
            _podman("rm", "-f", "-t", "2", *created, check=False)
        raise
    wanted = {_container_name(fleet, spec.name) for spec in hosts}
    return [host for host in status(fleet) if host.container in wanted]


def down(fleet: str = DEFAULT_FLEET) -> list[str]:
    """Remove every container of ``fleet`` (found by label), then the fleet's own networks;
    returns the containers' names."""
    out = _podman("ps", "-a", "--filter", f"label={FLEET_LABEL}={fleet}", "--format", "{{.Names}}")
    names = out.split()
    if names:
        _podman("rm", "-f", "-t", "2", *names)
    networks = _podman(
        "network", "ls", "--filter", f"label={FLEET_LABEL}={fleet}", "--format", "{{.Name}}"
    ).split()
    if networks:
        _podman("network", "rm", *networks)
    return names


def ensure_network(network: str, fleet: str) -> None:
    """Create the podman bridge network ``network`` for ``fleet`` unless it exists.

    Podman gives it a free subnet (10.89.x.0/24) and creates its bridge interface only when the
    first container joins, so a machine that never ran a container has no such interface yet.
    """
    info = _network_info(network)
    if info is None:
        _podman("network", "create", "--label", f"{FLEET_LABEL}={fleet}", network)
    elif (info.get("labels") or {}).get(FLEET_LABEL) != fleet:
        raise LocalFleetError(
            f"podman network {network} exists but is not fleet {fleet!r}'s (no "
            f"{FLEET_LABEL}={fleet} label); remove it or pick another fleet name"
        )


def _network_info(network: str) -> dict[str, Any] | None:
    out = _podman("network", "inspect", network, check=False)
    items = json.loads(out) if out.strip() else []
    return items[0] if items else None


def network_gateway(network: str = DEFAULT_NETWORK) -> str | None:
    """The host side of ``network`` (where containers reach this machine), None if no network.

    The address exists on this machine only while a container is attached to the network.
    """
    if network == DEFAULT_NETWORK:
        return BRIDGE_GATEWAY
    info = _network_info(network)
    for subnet in (info or {}).get("subnets") or []:
        if subnet.get("gateway"):
            return str(subnet["gateway"])
    return None


def status(fleet: str | None = DEFAULT_FLEET) -> list[RunningHost]:
    """Running hosts of ``fleet`` (``None``: of every fleet), sorted by name."""
    label = f"label={FLEET_LABEL}" + (f"={fleet}" if fleet else "")
    out = _podman("ps", "--filter", label, "--format", "json")
    hosts = []
    for item in json.loads(out or "[]"):
        name = item["Names"][0]
        info = _inspect(name)
        if info is None:  # removed between ps and inspect
            continue
        labels = info["Config"]["Labels"] or {}
        hosts.append(
            RunningHost(
                name=labels.get(HOST_LABEL, name),
                container=name,
                address=_address(info),
                fleet=labels.get(FLEET_LABEL, ""),
                gpu=labels.get(GPU_LABEL) or None,
                labels=labels,
            )
        )
    return sorted(hosts, key=lambda h: (h.fleet, h.name))


def _validate(hosts: Sequence[ContainerHost], profiles: dict[str, Any], fleet: str) -> None:
    problems = []
    seen: set[str] = set()
    if not fleet.replace("-", "").isalnum():
        problems.append(f"fleet name {fleet!r}: use letters, digits and '-'")
    for spec in hosts:
        if spec.name in seen:
            problems.append(f"host {spec.name}: listed twice")
        seen.add(spec.name)
        if not spec.name.replace("-", "").isalnum():
            problems.append(f"host {spec.name!r}: use letters, digits and '-' (it is a hostname)")
        if spec.gpu is not None and spec.gpu not in profiles:
            problems.append(
                f"host {spec.name}: gpu profile {spec.gpu!r} is not in "
                f"deploy/lab/fakegpu/profiles.json (known: {', '.join(sorted(profiles))})"
            )
    if problems:
        raise LocalFleetError("; ".join(problems))


def _run_container(
    spec: ContainerHost,
    container: str,
    fleet: str,
    image: str,
    key: Path,
    profiles: dict[str, Any],
    network: str = DEFAULT_NETWORK,
) -> None:
    _podman(
        "run",
        "--detach",
        "--pull=never",
        "--name", container,
        "--hostname", spec.name,
        "--network", network,
        *[arg for port in spec.publish for arg in ("--publish", port)],
        # systemd units with PrivateTmp=/ProtectSystem=/DynamicUser= need mount namespaces.
        "--cap-add", "SYS_ADMIN",
        *[arg for cap in spec.capabilities for arg in ("--cap-add", cap)],
        "--label", f"{FLEET_LABEL}={fleet}",
        "--label", f"{HOST_LABEL}={spec.name}",
        *[arg for key, value in _labels_for(spec).items() for arg in ("--label", f"{key}={value}")],
        "--volume", f"{key}.pub:/root/.ssh/authorized_keys:ro",
        *_device_flags(spec, profiles),
        image,
    )  # fmt: skip


def _labels_for(spec: ContainerHost) -> dict[str, str]:
    return {
        GPU_LABEL: spec.gpu or "",
        GPU_DRIVER_LABEL: "yes" if spec.gpu_driver else "no",
        PUBLISH_LABEL: ",".join(spec.publish),
        CAPS_LABEL: ",".join(spec.capabilities),
    }


def _differs(spec: ContainerHost, labels: dict[str, str]) -> bool:
    """Whether a running container was started for another spec (labels it lacks: unknown)."""
    wanted = _labels_for(spec)
    return any(labels[key] != wanted[key] for key in SPEC_LABELS if key in labels)


def _check_ssh_key(spec: ContainerHost, container: str, key: Path, fleet: str) -> None:
    """A reused host must let this run's key in: its authorized_keys is a bind mount of the
    public key the fleet came up with, so another ``MODELFLEET_CACHE``, or a key made again,
    would leave pyinfra with nothing but "Authentication failed"."""
    allowed = _podman("exec", container, "cat", "/root/.ssh/authorized_keys", check=False).split()
    public = key.with_suffix(".pub").read_text().split()
    if allowed[:2] != public[:2]:
        raise LocalFleetError(
            f"host {spec.name}: container {container} lets in another ssh key than this run's "
            f"{key}.pub (the fleet came up with another MODELFLEET_CACHE, or the key was made "
            "again); use the MODELFLEET_CACHE it came up with, or tear the fleet down first: "
            f"python -m modelfleet.deploy.lab.localfleet down --fleet {fleet}"
        )


def _wait_for_systemd(spec: ContainerHost, container: str) -> None:
    # Right after `podman run`, systemctl may not reach PID 1 yet (no output): ask again.
    deadline = time.monotonic() + SYSTEMD_TIMEOUT_S
    out = ""
    while time.monotonic() < deadline:
        out = _podman(
            "exec", container, "timeout", str(int(SYSTEMD_TIMEOUT_S)),
            "systemctl", "is-system-running", "--wait",
            check=False, timeout=SYSTEMD_TIMEOUT_S + 10,
        ).strip()  # fmt: skip
        if out == "running":
            return
        if out in ("degraded", "maintenance", "stopping"):
            break
        time.sleep(0.3)
    failed = _podman(
        "exec", container, "systemctl", "list-units", "--failed", "--plain", "--no-legend",
        check=False,
    ).strip()  # fmt: skip
    raise LocalFleetError(
        f"host {spec.name}: systemd in container {container} is {out or 'not answering'}"
        + (f"; failed units: {failed}" if failed else "")
        + f" (see: podman exec {container} journalctl -b)"
    )


def _install_fakegpu(spec: ContainerHost, container: str, profiles: dict[str, Any]) -> None:
    """Copy the stand-in tools in and link the ones this host's profile and driver state imply."""
    if spec.gpu is None:
        return
    gpus = profiles[spec.gpu]["gpus"]
    config = {"profile": spec.gpu, "gpus": gpus, "secure_boot": spec.secure_boot, "efi": True}
    tools = list(ALWAYS_TOOLS)
    if spec.gpu_driver:
        for vendor in sorted({gpu["vendor"] for gpu in gpus}):
            tools.extend(GPU_TOOLS[vendor])
    script = (
        f"set -e; mkdir -p {FAKEGPU_LIB} /etc/modelfleet; "
        f"cat > {FAKEGPU_LIB}/fakegpu.py; chmod 755 {FAKEGPU_LIB}/fakegpu.py; "
        f"printf '%s\\n' {shlex.quote(json.dumps(config))} > {FAKEGPU_CONFIG}; "
        + "".join(f"ln -sf {FAKEGPU_LIB}/fakegpu.py /usr/local/bin/{tool}; " for tool in tools)
    )
    done = subprocess.run(
        ["podman", "exec", "-i", container, "sh", "-c", script],
        input=(FAKEGPU_DIR / "fakegpu.py").read_text(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise LocalFleetError(
            f"host {spec.name}: installing the stand-in GPU tools failed: {done.stderr.strip()}"
        )


def _device_flags(spec: ContainerHost, profiles: dict[str, Any]) -> list[str]:
    """Device nodes a loaded driver would create, as aliases of /dev/null.

    Containers may not mknod, but ``--device /dev/null:/dev/nvidia0`` gives a character device
    with the right name: ``test -c``, ``ls /dev/dri`` and udev-rule checks see a device, and
    nothing can mistake it for a working GPU.
    """
    if spec.gpu is None or not spec.gpu_driver:
        return []
    gpus = profiles[spec.gpu]["gpus"]
    nvidia = [g for g in gpus if g["vendor"] == "nvidia"]
    amd = [g for g in gpus if g["vendor"] == "amd"]
    nodes = []
    if nvidia:
        nodes += ["/dev/nvidiactl", "/dev/nvidia-uvm"]
        nodes += [f"/dev/nvidia{i}" for i in range(len(nvidia))]
    if amd:
        nodes.append("/dev/kfd")
        for i in range(len(amd)):
            nodes += [f"/dev/dri/card{i}", f"/dev/dri/renderD{128 + i}"]
    return [arg for node in nodes for arg in ("--device", f"/dev/null:{node}:rwm")]


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"localfleet: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the default fleet

# The fleet ``inventory/local.py`` describes: two GPU-emulated hosts for the backend stand-ins
# and one CPU host with the real llama.cpp llama-server, which also runs the router.
LOCAL_HOSTS: tuple[ContainerHost, ...] = (
    ContainerHost("gpu-nv1", gpu="rtx4090x2"),
    ContainerHost("gpu-amd1", gpu="mi300x"),
    ContainerHost("cpu-llama1", gpu="cpu"),
)


def ssh_host_data(host: RunningHost) -> dict[str, Any]:
    """pyinfra host data to reach ``host`` over ssh (the fastest connector here)."""
    return {
        "ssh_hostname": host.address,
        "ssh_user": "root",
        "ssh_key": str(SSH_KEY),
        # Every container of the image shares its ssh host keys: nothing to verify against.
        "ssh_strict_host_key_checking": "off",
        "ssh_known_hosts_file": "/dev/null",
    }


# --------------------------------------------------------------------------- command line


@click.group()
def main() -> None:
    """Bring the local container fleet up, tear it down, or list it."""


@main.command("up")
@click.option("--fleet", default=DEFAULT_FLEET, show_default=True, help="fleet (label) name")
def up_command(fleet: str) -> None:
    """Start the default local fleet (inventory/local.py's hosts)."""
    try:
        hosts = up(LOCAL_HOSTS, fleet=fleet, progress=True)
    except LocalFleetError as exc:
        raise click.ClickException(str(exc)) from None
    for host in hosts:
        click.echo(f"{host.name:<12} {host.address:<15} {host.container}  gpu={host.gpu}")


@main.command("down")
@click.option("--fleet", default=DEFAULT_FLEET, show_default=True, help="fleet (label) name")
def down_command(fleet: str) -> None:
    """Remove every container of the fleet."""
    try:
        names = down(fleet)
    except LocalFleetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {len(names)} containers" + (f": {' '.join(names)}" if names else ""))


@main.command("status")
@click.option("--fleet", default=None, help="only this fleet (default: every fleet)")
def status_command(fleet: str | None) -> None:
    """List running fleet containers."""
    try:
        hosts = status(fleet)
    except LocalFleetError as exc:
        raise click.ClickException(str(exc)) from None
    for host in hosts:
        click.echo(f"{host.fleet:<12} {host.name:<12} {host.address:<15} gpu={host.gpu}")


if __name__ == "__main__":
    main()
