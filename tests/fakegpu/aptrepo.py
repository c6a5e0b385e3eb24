"""STAND-IN apt repositories for the driver roles: dummy NVIDIA, Container Toolkit, ROCm packages.

Real NVIDIA and AMD packages cannot be fetched here (and could not load a kernel module in a
container anyway), so the system roles are tested against packages with the real *names*,
*layout of repositories* and *commands*, whose contents are stand-ins:

============================================ =================================================
repository (same shape as upstream)           packages (stand-ins)
============================================ =================================================
``cuda/`` flat repo, key ``3bf863cc.pub``     ``cuda-drivers-<branch>`` ->
                                              ``nvidia-driver-<branch>`` (``nvidia-smi``
                                              wrapper around ``fakegpu.py``,
                                              ``nvidia-persistenced`` + unit)
``distribution/`` flat repo, key ``key.asc``  ``linux-headers-<kernel>`` (left out to test the
                                              missing-headers stop); Ubuntu-style
                                              ``nvidia-utils-<branch>-server``,
                                              ``nvidia-compute-utils-<branch>-server``,
                                              ``linux-modules-nvidia-<branch>-server-<kernel>``
``libnvidia-container/stable/deb/<arch>/``    ``nvidia-container-toolkit`` -> ``-base`` with a
flat repo, key ``gpgkey``                     stand-in ``nvidia-ctk`` (runtime configure, cdi
                                              generate/list)
``rocm/apt/<ver>/`` suite ``jammy main``      ``rocm-hip-runtime``, ``amd-smi-lib``,
key ``rocm.gpg.key``                          ``rocm-smi-lib`` (amd-smi / rocm-smi wrappers)
``amdgpu/<ver>/ubuntu/`` suite ``jammy main`` ``amdgpu-dkms``
============================================ =================================================

Every repository is signed (InRelease, Release.gpg) with a throw-away key, served as an
ASCII-armored key file like the vendors' (apt reads ``.asc`` keyrings in ``signed-by=``).
Served over HTTP on the podman bridge address so the container hosts can reach it.

Example::

    repo = build_repos(tmp_path / "apt", kernel="6.1.0-18-amd64")
    with serve(repo.root) as url:       # http://10.88.0.1:PORT
        ...                             # point nvidia_cuda_repo_url at f"{url}/cuda" etc.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import gzip
import hashlib
import http.server
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Bump when package contents change: cached builds (tests/fakegpu/converge.py) are rebuilt.
RECIPE = 3
BRIDGE_GATEWAY = "10.88.0.1"


@dataclass(frozen=True)
class StandinRepos:
    """Where the built repositories are (paths relative to ``root`` are URL paths)."""

    root: Path
    arch: str
    branch: str
    driver_version: str
    toolkit_version: str
    rocm_version: str
    kernel: str
    has_headers: bool

    cuda = "cuda"
    distribution = "distribution"
    rocm_suite = "jammy"

    @property
    def toolkit(self) -> str:
        return f"libnvidia-container/stable/deb/{self.arch}"

    @property
    def rocm(self) -> str:
        return f"rocm/apt/{self.rocm_version}"

    @property
    def amdgpu(self) -> str:
        return f"amdgpu/{self.rocm_version}/ubuntu"


# --------------------------------------------------------------------------- package contents

NVIDIA_SMI = """#!/bin/sh
# STAND-IN for the NVIDIA driver's nvidia-smi (modelfleet tests): answers for the emulated GPUs.
export FAKEGPU_NVIDIA_DRIVER_VERSION={version}
if [ -x /usr/local/lib/modelfleet-fakegpu/fakegpu.py ]; then
    exec /usr/local/lib/modelfleet-fakegpu/fakegpu.py nvidia-smi "$@"
fi
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
exit 9
"""

PERSISTENCED = """#!/bin/sh
# STAND-IN for nvidia-persistenced: turns persistence mode on and stays up.
/usr/bin/nvidia-smi -pm 1 >/dev/null || exit 1
exec sleep infinity
"""

PERSISTENCED_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon (modelfleet stand-in)
Wants=syslog.target

[Service]
ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --persistence-mode
ExecStopPost=/usr/bin/nvidia-smi -pm 0

[Install]
WantedBy=multi-user.target
"""

RUNTIME = """#!/bin/sh
# STAND-IN for nvidia-container-runtime: plain runc (no GPU hook to run here).
exec runc "$@"
"""

AMD_TOOL = """#!/bin/sh
# STAND-IN for ROCm's {tool} (modelfleet tests): answers for the emulated GPUs.
exec /usr/local/lib/modelfleet-fakegpu/fakegpu.py {tool} "$@"
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _deb(
    out_dir: Path,
    name: str,
    version: str,
    arch: str,
    files: dict[str, tuple[str, int]] | None = None,
    depends: str = "",
    description: str = "",
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "pkg"
        control = [
            f"Package: {name}",
            f"Version: {version}",
            f"Architecture: {arch}",
            "Maintainer: modelfleet tests <tests@modelfleet.invalid>",
            "Section: misc",
            "Priority: optional",
        ]
        if depends:
            control.append(f"Depends: {depends}")
        control.append(f"Description: STAND-IN {description or name} (modelfleet tests)")
        _write(tree / "DEBIAN" / "control", "\n".join(control) + "\n")
        for path, (text, mode) in (files or {}).items():
            _write(tree / path.lstrip("/"), text, mode)
        out_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree),
             str(out_dir / f"{name}_{version.split(':')[-1]}_{arch}.deb")],
            check=True, capture_output=True,
        )  # fmt: skip


# --------------------------------------------------------------------------- repositories


def _release(directory: Path, files: list[Path], suite: str | None) -> str:
    lines = ["Origin: modelfleet-standin", "Label: modelfleet stand-in"]
    if suite:
        lines += [f"Suite: {suite}", f"Codename: {suite}", "Components: main"]
    lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
    for field, algo in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        lines.append(f"{field}:")
        for path in files:
            data = path.read_bytes()
            digest = hashlib.new(algo, data).hexdigest()
            lines.append(f" {digest} {len(data)} {path.relative_to(directory)}")
    return "\n".join(lines) + "\n"


def _index(repo: Path, pool: str, packages_dir: Path) -> list[Path]:
    """Write Packages and Packages.gz for the .debs under repo/pool."""
    scanned = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", pool, "/dev/null"],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    packages_dir.mkdir(parents=True, exist_ok=True)
    plain = packages_dir / "Packages"
    plain.write_text(scanned)
    packed = packages_dir / "Packages.gz"
    packed.write_bytes(gzip.compress(scanned.encode(), mtime=0))
    return [plain, packed]


def _sign(release: Path, gnupg_home: Path) -> None:
    env = {**os.environ, "GNUPGHOME": str(gnupg_home)}
    for args in (
        ["--clearsign", "-o", str(release.with_name("InRelease"))],
        ["-abs", "-o", str(release.with_name("Release.gpg"))],
    ):
        subprocess.run(
            ["gpg", "--batch", "--yes", *args, str(release)], env=env, check=True,
            capture_output=True,
        )  # fmt: skip


def _flat_repo(repo: Path, gnupg_home: Path) -> None:
    files = _index(repo, ".", repo)
    (repo / "Release").write_text(_release(repo, files, suite=None))
    _sign(repo / "Release", gnupg_home)


def _suite_repo(repo: Path, suite: str, arch: str, gnupg_home: Path) -> None:
    dist = repo / "dists" / suite
    files = _index(repo, "pool", dist / "main" / f"binary-{arch}")
    (dist / "Release").write_text(_release(dist, files, suite=suite))
    _sign(dist / "Release", gnupg_home)


def _signing_key(gnupg_home: Path) -> str:
    gnupg_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(gnupg_home)}
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
         "modelfleet stand-in repo <standin@modelfleet.invalid>", "ed25519", "sign", "never"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return subprocess.run(
        ["gpg", "--batch", "--armor", "--export"], env=env, check=True, capture_output=True,
        text=True,
    ).stdout  # fmt: skip


def build_repos(
    root: Path,
    kernel: str,
    branch: str = "550",
    driver_version: str = "550.54.15-1",
    toolkit_version: str = "1.17.8-1",
    rocm_version: str = "6.4.1",
    with_headers: bool = True,
) -> StandinRepos:
    """Build and sign every stand-in repository under ``root`` (about 2 s)."""
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    ).stdout.strip()
    repos = StandinRepos(
        root, arch, branch, driver_version, toolkit_version, rocm_version, kernel, with_headers
    )
    with tempfile.TemporaryDirectory() as keys:
        gnupg_home = Path(keys) / "gnupg"
        public_key = _signing_key(gnupg_home)
        upstream = driver_version.split("-")[0]

        cuda = root / repos.cuda
        _deb(cuda, f"cuda-drivers-{branch}", driver_version, arch,
             depends=f"nvidia-driver-{branch} (= {driver_version})",
             description=f"NVIDIA driver {branch} metapackage")  # fmt: skip
        _deb(cuda, f"nvidia-driver-{branch}", driver_version, arch,
             files={
                 "/usr/bin/nvidia-smi": (NVIDIA_SMI.format(version=upstream), 0o755),
                 "/usr/bin/nvidia-persistenced": (PERSISTENCED, 0o755),
                 "/lib/systemd/system/nvidia-persistenced.service": (PERSISTENCED_UNIT, 0o644),
             },
             description=f"NVIDIA driver {upstream}")  # fmt: skip
        _write(cuda / "3bf863cc.pub", public_key)
        _flat_repo(cuda, gnupg_home)

        toolkit = root / repos.toolkit
        ctk = (HERE / "nvidia_ctk.py").read_text()
        _deb(toolkit, "nvidia-container-toolkit-base", toolkit_version, arch,
             files={"/usr/bin/nvidia-ctk": (ctk, 0o755)},
             description="NVIDIA Container Toolkit base (nvidia-ctk)")  # fmt: skip
        _deb(toolkit, "nvidia-container-toolkit", toolkit_version, arch,
             files={"/usr/bin/nvidia-container-runtime": (RUNTIME, 0o755)},
             depends=f"nvidia-container-toolkit-base (= {toolkit_version})",
             description="NVIDIA Container Toolkit")  # fmt: skip
        _write(root / "libnvidia-container" / "gpgkey", public_key)
        _flat_repo(toolkit, gnupg_home)

        rocm = root / repos.rocm
        pool = rocm / "pool" / "main"
        rocm_pkg_version = f"{rocm_version}.60401-1"
        for tool, package in (("amd-smi", "amd-smi-lib"), ("rocm-smi", "rocm-smi-lib")):
            _deb(pool, package, rocm_pkg_version, arch,
                 files={
                     f"/opt/rocm-{rocm_version}/bin/{tool}": (AMD_TOOL.format(tool=tool), 0o755),
                     f"/usr/bin/{tool}": (AMD_TOOL.format(tool=tool), 0o755),
                 },
                 description=f"ROCm {tool}")  # fmt: skip
        _deb(pool, "rocm-hip-runtime", rocm_pkg_version, arch,
             depends=f"amd-smi-lib (= {rocm_pkg_version}), rocm-smi-lib (= {rocm_pkg_version})",
             description="ROCm HIP runtime")  # fmt: skip
        _suite_repo(rocm, repos.rocm_suite, arch, gnupg_home)
        _write(root / "rocm" / "rocm.gpg.key", public_key)

        # The distribution's own repository (Ubuntu-style names): the running kernel's headers,
        # and the driver split the way Ubuntu ships it, with precompiled signed modules (the
        # Secure Boot path: no DKMS, no headers).
        distribution = root / repos.distribution
        ubuntu_version = f"{upstream}-0ubuntu1"
        _deb(distribution, f"linux-modules-nvidia-{branch}-server-{kernel}", ubuntu_version, arch,
             files={f"/lib/modules/{kernel}/kernel/nvidia-{branch}/nvidia.ko": ("stand-in", 0o644)},
             description=f"signed NVIDIA {branch} modules for {kernel}")  # fmt: skip
        _deb(distribution, f"nvidia-utils-{branch}-server", ubuntu_version, arch,
             files={"/usr/bin/nvidia-smi": (NVIDIA_SMI.format(version=upstream), 0o755)},
             description=f"NVIDIA {branch} utilities")  # fmt: skip
        _deb(distribution, f"nvidia-compute-utils-{branch}-server", ubuntu_version, arch,
             files={
                 "/usr/bin/nvidia-persistenced": (PERSISTENCED, 0o755),
                 "/lib/systemd/system/nvidia-persistenced.service": (PERSISTENCED_UNIT, 0o644),
             },
             description=f"NVIDIA {branch} compute utilities")  # fmt: skip
        if with_headers:
            _deb(distribution, f"linux-headers-{kernel}", "1.0-1", arch,
                 files={f"/usr/src/linux-headers-{kernel}/Makefile": ("# stand-in\n", 0o644)},
                 description=f"kernel headers for {kernel}")  # fmt: skip
        _write(distribution / "key.asc", public_key)
        _flat_repo(distribution, gnupg_home)

        amdgpu = root / repos.amdgpu
        _deb(amdgpu / "pool" / "main", "amdgpu-dkms", "1:6.10.5.60401-1", "all",
             description="amdgpu kernel module (DKMS)")  # fmt: skip
        _suite_repo(amdgpu, repos.rocm_suite, arch, gnupg_home)
    return repos


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path, host: str = BRIDGE_GATEWAY, port: int = 0) -> Iterator[str]:
    """Serve ``root`` over HTTP on ``host`` (default: the podman bridge); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
