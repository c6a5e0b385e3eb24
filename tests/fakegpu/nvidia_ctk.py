#!/usr/bin/env python3
"""STAND-IN for the NVIDIA Container Toolkit's ``nvidia-ctk`` (modelfleet tests).

Implements what the roles call, with the real tool's file formats:

- ``nvidia-ctk runtime configure --runtime=docker [--config=PATH] [--set-as-default]``
  adds ``runtimes.nvidia`` to docker's daemon.json (other keys kept);
- ``nvidia-ctk cdi generate --output=PATH`` writes a CDI spec (cdiVersion, kind nvidia.com/gpu,
  one device per GPU by index and UUID, plus ``all``) from ``nvidia-smi``;
- ``nvidia-ctk cdi list`` prints the CDI device names found in /etc/cdi and /var/run/cdi;
- ``nvidia-ctk --version``.
"""

import json
import subprocess
import sys
from pathlib import Path

VERSION = "1.17.8"
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))


def option(args, name, default=None):
    for arg in args:
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    if name in args and args.index(name) + 1 < len(args):
        return args[args.index(name) + 1]
    return default


def runtime_configure(args):
    runtime = option(args, "--runtime", "docker")
    if runtime != "docker":
        print(f"nvidia-ctk stand-in: runtime {runtime!r} is not implemented", file=sys.stderr)
        return 2
    path = Path(option(args, "--config", "/etc/docker/daemon.json"))
    config = json.loads(path.read_text()) if path.is_file() and path.read_text().strip() else {}
    config.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    if "--set-as-default" in args:
        config["default-runtime"] = "nvidia"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=4) + "\n")
    print(f"INFO[0000] Wrote updated config to {path}")
    print("INFO[0000] It is recommended that docker daemon be restarted.")
    return 0


def cdi_generate(args):
    output = option(args, "--output")
    query = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    if query.returncode != 0:
        print(
            "ERROR[0000] failed to generate CDI spec: failed to initialize NVML: "
            "ERROR_LIBRARY_NOT_FOUND",
            file=sys.stderr,
        )
        return 1
    rows = [[c.strip() for c in line.split(",")] for line in query.stdout.splitlines() if line]
    driver = rows[0][2] if rows else "unknown"
    lines = ["---", 'cdiVersion: "0.5.0"', "kind: nvidia.com/gpu", "devices:"]
    for index, uuid, _ in rows:
        for name in (index, uuid):
            lines += [
                f'- name: "{name}"',
                "  containerEdits:",
                "    deviceNodes:",
                f"    - path: /dev/nvidia{index}",
            ]
    lines += ["- name: all", "  containerEdits:", "    deviceNodes:"]
    lines += [f"    - path: /dev/nvidia{index}" for index, _, _ in rows]
    lines += [
        "containerEdits:",
        "  env:",
        "  - NVIDIA_VISIBLE_DEVICES=void",
        "  mounts:",
        f"  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.{driver}",
        f"    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.{driver}",
    ]
    text = "\n".join(lines) + "\n"
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        print("INFO[0000] Generated CDI spec with version 0.5.0")
    else:
        print(text, end="")
    return 0


def cdi_list(args):
    names = []
    for folder in CDI_DIRS:
        for spec in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            kind = "nvidia.com/gpu"
            for line in spec.read_text().splitlines():
                if line.startswith("kind:"):
                    kind = line.split(":", 1)[1].strip()
                if line.startswith("- name:"):
                    names.append(f"{kind}={line.split(':', 1)[1].strip().strip(chr(34))}")
    print(f"INFO[0000] Found {len(names)} CDI devices")
    for name in names:
        print(name)
    return 0


def main(args):
    if args[:1] == ["--version"]:
        print(f"NVIDIA Container Toolkit CLI version {VERSION} (modelfleet stand-in)")
        return 0
    commands = {
        ("runtime", "configure"): runtime_configure,
        ("cdi", "generate"): cdi_generate,
        ("cdi", "list"): cdi_list,
    }
    handler = commands.get(tuple(args[:2]))
    if handler is None:
        print(f"nvidia-ctk stand-in: {' '.join(args)!r} is not implemented", file=sys.stderr)
        return 2
    return handler(args[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
