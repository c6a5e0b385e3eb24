"""The ``modelfleet`` command: plan, render and detect, straight from a pyinfra inventory.

    modelfleet plan inventory/example.py            # what goes where, per host, with VRAM fit
    modelfleet plan inventory/example.py --json     # the same for machines
    modelfleet render inventory/example.py --out render-out
    modelfleet detect inventory/local.py            # run only the GPU facts, print per host

``plan`` and ``render`` never touch a host: hosts need a ``gpus:`` override, unless
``--detect`` asks them (over pyinfra, like ``detect``).

Other modules add subcommands with one line in ``SUBCOMMANDS`` (imported only when that
subcommand runs, so ``plan`` never pays for the simulator's imports).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from modelfleet.deploy.hardware.parsers import HostHardware, ParseError
from modelfleet.deploy.inventory import Fleet, FleetError, load_fleet
from modelfleet.deploy.plan import (
    BackendInstance,
    FleetPlan,
    PlanError,
    hardware_from_overrides,
    plan_fleet,
)

# name -> "module:attribute" of click commands that live elsewhere.
SUBCOMMANDS: dict[str, str] = {
    "simulate": "modelfleet.deploy.simulate:simulate_command",
    "demo": "modelfleet.deploy.lab.demo:demo_command",
}


class _Group(click.Group):
    """A click group that also offers the SUBCOMMANDS, imported when first used."""

    def _lazy(self, name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command), target
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names |= set(SUBCOMMANDS)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or self._lazy(cmd_name)


@click.group(cls=_Group)
@click.version_option(package_name="modelfleet")
def main() -> None:
    """Provision a fleet of GPU hosts for local LLM serving, behind one router."""


inventory_argument = click.argument("inventory", type=click.Path(dir_okay=False))
group_data_option = click.option(
    "--group-data",
    "group_data",
    multiple=True,
    type=click.Path(file_okay=False),
    help="extra group_data folder (as pyinfra's --group-data); later wins",
)
detect_option = click.option(
    "--detect",
    is_flag=True,
    help="ask hosts without a gpus: override for their hardware (connects over pyinfra)",
)


# --------------------------------------------------------------------------- shared steps


def _load(inventory: str, group_data: tuple[str, ...]) -> Fleet:
    try:
        fleet = load_fleet(inventory, group_data)
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in fleet.warnings:
        click.echo(f"warning: {warning}", err=True)
    return fleet


def _hardware(fleet: Fleet, inventory: str, detect: bool) -> dict[str, HostHardware]:
    """Override hardware, plus (with --detect) what hosts without an override report."""
    hardware = hardware_from_overrides(fleet, missing_ok=detect)
    missing = [h for h in fleet.backend_hosts if h.name not in hardware]
    if not missing:
        return hardware
    results = detect_hosts(inventory, [h.inventory_name for h in missing])
    problems = []
    for spec in missing:
        result = results.get(spec.inventory_name, "not detected")
        if isinstance(result, HostHardware):
            hardware[spec.name] = result
        else:
            problems.append(f"host {spec.name}: detection failed: {result}")
    if problems:
        raise click.ClickException("\n".join(problems))
    return hardware


def _plan(inventory: str, group_data: tuple[str, ...], detect: bool) -> FleetPlan:
    fleet = _load(inventory, group_data)
    try:
        return plan_fleet(fleet, _hardware(fleet, inventory, detect))
    except PlanError as exc:
        raise click.ClickException(str(exc)) from None


# --------------------------------------------------------------------------- plan


def resident_mb(inst: BackendInstance) -> int:
    """VRAM held in the worst case: the largest models that fit together, up to max_loaded."""
    total, count = 0, 0
    for need in sorted((m.need_mb for m in inst.models), reverse=True):
        if count < inst.max_loaded and total + need <= inst.capacity_mb:
            total, count = total + need, count + 1
    return total


def plan_json(plan: FleetPlan) -> dict[str, Any]:
    """The plan as JSON-ready data, with the worst-case VRAM use of every instance."""
    data = plan.model_dump(mode="json")
    for host_data, host in zip(data["hosts"], plan.hosts, strict=True):
        for inst_data, inst in zip(host_data["instances"], host.instances, strict=True):
            inst_data["vram_used_mb"] = resident_mb(inst)
            inst_data["vram_free_mb"] = inst.capacity_mb - resident_mb(inst)
    return data


def _gib(mb: int) -> str:
    return f"{mb / 1024:.0f} GiB"


def plan_table(plan: FleetPlan, source: str) -> str:
    """The readable plan: per host, its instances, their GPUs, models and VRAM fit."""
    instances = plan.instances
    models = {m.name for inst in instances for m in inst.models}
    lines = [
        f"fleet {plan.fleet} ({source}): {len(plan.hosts)} hosts, {len(instances)} backend "
        f"instances, {len(models)} models",
    ]
    for host in plan.hosts:
        roles = [*(["router"] if host.router else []), *(["backends"] if host.instances else [])]
        hw = host.hardware
        hw_text = ""
        if hw is not None:
            gpu_text = (
                f"{len(hw.gpus)} GPU{'s' if len(hw.gpus) != 1 else ''}" if hw.gpus else "no GPU"
            )
            hw_text = f" | {gpu_text}, {hw.cpu_cores} cores, {_gib(hw.ram_mb)} RAM"
        lines += ["", f"{host.name} ({host.address}) | {', '.join(roles) or 'no role'}{hw_text}"]
        for inst in host.instances:
            used = resident_mb(inst)
            vis = " ".join(f"{k}={v}" for k, v in sorted(inst.env.items()) if "VISIBLE" in k)
            lines.append(
                f"  {inst.name}  {inst.kind} ({inst.install}, {inst.accelerator})  "
                f"port {inst.port}  {inst.gpu_summary}" + (f"  {vis}" if vis else "")
            )
            memory = "RAM" if inst.accelerator == "cpu" else "VRAM"
            lines.append(
                f"    {memory}: {inst.capacity_mb} MB usable of {inst.vram_mb}; up to "
                f"{inst.max_loaded} resident use {used} MB, {inst.capacity_mb - used} MB free"
            )
            lines.append(f"    {'model':<22}{'need MB':>9}{'weights':>9}{'KV':>7}  ctx x slots")
            for model in inst.models:
                lines.append(
                    f"    {model.name:<22}{model.need_mb:>9}{model.size_mb:>9}{model.kv_mb:>7}"
                    f"  {model.ctx} x {model.slots}"
                )
    for misfit in plan.skipped:
        lines.append(
            f"\nskipped: {misfit.model} on {misfit.host} (needs {misfit.need_mb} MB, largest "
            f"instance {misfit.largest_instance} offers {misfit.largest_mb} MB)"
        )
    return "\n".join(lines)


@main.command()
@inventory_argument
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON")
@group_data_option
@detect_option
def plan(inventory: str, as_json: bool, group_data: tuple[str, ...], detect: bool) -> None:
    """Show what goes where: per host, its backend instances, GPUs, models and VRAM fit."""
    fleet_plan = _plan(inventory, group_data, detect)
    if as_json:
        click.echo(json.dumps(plan_json(fleet_plan), indent=2))
    else:
        click.echo(plan_table(fleet_plan, inventory))


# --------------------------------------------------------------------------- render


@main.command()
@inventory_argument
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="folder for <host>/<path on host> files and router.yaml",
)
@group_data_option
@detect_option
def render(inventory: str, out_dir: str, group_data: tuple[str, ...], detect: bool) -> None:
    """Write every file of every host, as <out>/<host>/<path on host>; each is parsed back.

    The files are byte for byte what a deploy puts on the hosts: the same function
    (``deploy/render.py``) makes them, with the role knobs from each host's data.
    """
    from modelfleet.deploy.inventory import load_inventory
    from modelfleet.deploy.render import parse_back, render_host
    from modelfleet.roles.knobs import check_role_keys

    fleet_plan = _plan(inventory, group_data, detect)
    loaded = load_inventory(inventory, group_data)
    data = {h.name: loaded.get_host(h.inventory_name).data.dict() for h in fleet_plan.hosts}
    problems = [
        problem
        for h in fleet_plan.hosts
        for problem in check_role_keys(data[h.name], f"{inventory}: host {h.name}")
    ]
    try:
        files = (
            {}
            if problems
            else {h.name: render_host(fleet_plan, h, data[h.name]) for h in fleet_plan.hosts}
        )
    except ValueError as exc:  # e.g. keepalived_interface not set (the deploy asks the host)
        raise click.ClickException(f"{inventory}: {exc}") from None
    for host_name, host_files in files.items():
        for file in host_files:
            try:
                parse_back(file)
            except Exception as exc:
                problems.append(f"{host_name}: {file.path}: does not parse back: {exc}")
    if problems:
        raise click.ClickException("\n".join(problems))
    out = Path(out_dir)
    before = _rendered_before(out)
    written = set()
    for host_name, host_files in files.items():
        for file in host_files:
            relative = f"{host_name}/{file.path.lstrip('/')}"
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(file.content)
            written.add(relative)
        click.echo(f"{host_name}: {len(host_files)} files")
    # a host, instance or role gone from the fleet leaves no file behind to be reviewed or
    # committed as if it were still deployed
    stale = sorted(before - written)
    for relative in stale:
        (out / relative).unlink(missing_ok=True)
        for parent in (out / relative).parents:
            if parent == out or any(parent.iterdir()):
                break
            parent.rmdir()
    (out / RENDER_MANIFEST).write_text("".join(f"{p}\n" for p in sorted(written)))
    if stale:
        click.echo(f"removed {len(stale)} files of an earlier render: {', '.join(stale)}")


RENDER_MANIFEST = ".modelfleet-render"  # the files the last render wrote, one per line


def _rendered_before(out: Path) -> set[str]:
    """What an earlier ``render`` wrote into ``out`` (its manifest): only those files are
    ever removed, so other files in the folder (a GitOps repository's) stay."""
    manifest = out / RENDER_MANIFEST
    if not manifest.is_file():
        return set()
    lines = manifest.read_text().splitlines()
    # only paths inside ``out``, whatever the manifest says
    return {p for p in lines if p and not Path(p).is_absolute() and ".." not in Path(p).parts}


# --------------------------------------------------------------------------- detect


def detect_hosts(inventory: str, only: list[str] | None = None) -> dict[str, HostHardware | str]:
    """Run the GPU detection fact on the inventory's hosts; a failure is a message, per host.

    Connects with pyinfra's API, which needs gevent's monkey-patching: call this from a CLI
    process, not from inside an asyncio program.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gevent import monkey

        monkey.patch_all()
    from pyinfra.api import Config, State
    from pyinfra.api.facts import get_fact
    from pyinfra.context import ctx_host, ctx_state

    from modelfleet.deploy.inventory import _pyinfra_make_inventory
    from modelfleet.roles.gpu.facts import HostHardwareFact

    with ctx_state.use(State()):
        loaded = _pyinfra_make_inventory()(inventory, cwd=os.getcwd())
    state = State(loaded, Config(CONNECT_TIMEOUT=10))
    results: dict[str, HostHardware | str] = {}
    for host in loaded:
        if only is not None and host.name not in only:
            continue
        try:
            with ctx_state.use(state), ctx_host.use(host):
                host.connect(raise_exceptions=True, show_errors=False)
                results[host.name] = get_fact(
                    state, host, HostHardwareFact, apply_failed_hosts=False
                )
        except ParseError as exc:
            results[host.name] = str(exc)
        except Exception as exc:
            results[host.name] = f"{type(exc).__name__}: {exc}".strip()
        finally:
            if host.connected:
                host.disconnect()
    return results


def hardware_lines(hardware: HostHardware) -> list[str]:
    lines = []
    for gpu in hardware.gpus:
        extra = ", ".join(
            part
            for part in (
                gpu.uuid,
                f"driver {gpu.driver}" if gpu.driver else "",
                f"compute {gpu.compute_cap}" if gpu.compute_cap else "",
                f"MIG x{len(gpu.mig_devices)}" if gpu.mig_enabled else "",
            )
            if part
        )
        lines.append(f"  {gpu.vendor} {gpu.index}: {gpu.name}, {gpu.vram_mb} MB ({extra})")
    if not hardware.gpus:
        lines.append("  no GPU")
    lines.append(f"  {hardware.cpu_cores} cores, {hardware.ram_mb} MB RAM; via {hardware.source}")
    if hardware.device_nodes.kfd or hardware.device_nodes.render_nodes:
        nodes = ["/dev/kfd"] if hardware.device_nodes.kfd else []
        lines.append(f"  devices: {' '.join(nodes + list(hardware.device_nodes.render_nodes))}")
    lines += [f"  note: {note}" for note in hardware.notes]
    return lines


@main.command()
@inventory_argument
@click.option("--json", "as_json", is_flag=True, help="print the hardware as JSON")
def detect(inventory: str, as_json: bool) -> None:
    """Run only the GPU detection facts on every host and print its GPUs.

    A host that cannot be reached or whose tools print nonsense is reported; the others still
    print. Exits 1 when any host failed.
    """
    if not Path(inventory).is_file():
        raise click.ClickException(f"{inventory}: no such inventory file")
    results = detect_hosts(inventory)
    failed = [name for name, result in results.items() if not isinstance(result, HostHardware)]
    if as_json:
        payload = {
            name: result.model_dump(mode="json")
            if isinstance(result, HostHardware)
            else {"error": result}
            for name, result in results.items()
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        for name, result in results.items():
            if isinstance(result, HostHardware):
                click.echo("\n".join([name, *hardware_lines(result)]))
            else:
                click.echo(f"{name}\n  FAILED: {result}")
    if failed:
        click.echo(f"detection failed on {len(failed)} host(s): {', '.join(failed)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
