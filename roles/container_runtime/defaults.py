"""Every knob of the container_runtime role, with its default. Override in group_data."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # "podman" or "docker"; the role does nothing for hosts without this key set.
    "container_runtime_engine": "podman",
    # Packages per engine (Debian's own: podman, docker.io). Pin with "pkg=version".
    "container_runtime_packages": {"podman": ["podman"], "docker": ["docker.io"]},
    # Start and enable docker.service (podman has no daemon).
    "container_runtime_manage_service": True,
    # Extra dockerd flags, written as a systemd drop-in for docker.service (daemon.json stays
    # nvidia-ctk's), e.g. inside a container: ["--storage-driver=vfs", "--iptables=false",
    # "--ip6tables=false", "--bridge=none"]. Empty: no drop-in.
    "container_runtime_docker_extra_args": [],
    # GPU access for containers: "auto" (nvidia when the host is in gpu_nvidia or has
    # nvidia-ctk, amd when in gpu_amd or /dev/kfd exists), "nvidia", "amd" or "none".
    "container_runtime_gpu": "auto",
    # Users allowed to run docker without sudo (docker group); podman runs rootful here.
    "container_runtime_users": [],
}
