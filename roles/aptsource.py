"""Signed third-party apt repositories and kernel headers, shared by the nvidia and rocm roles.

A repository is two files: its ASCII-armored signing key in ``/etc/apt/keyrings/<name>.asc``
(apt reads ``.asc`` keyrings in ``signed-by=`` directly, so the host needs no gpg) and a
one-line source in ``/etc/apt/sources.list.d/<name>.list``. The package index is refreshed
only when one of them changed.

Example::

    signed_repo("nvidia-cuda", url=CUDA_URL, key_url=CUDA_KEY_URL)            # flat repo
    signed_repo("rocm", url=ROCM_URL, key_url=ROCM_KEY_URL, suite="jammy", components="main")
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files

KEYRINGS = "/etc/apt/keyrings"


def source_line(url: str, key_path: str, suite: str = "/", components: str = "") -> str:
    """``deb [signed-by=KEY] URL SUITE COMPONENTS`` (suite "/" = a flat repository)."""
    line = f"deb [signed-by={key_path}] {url.rstrip('/')}{'/' if suite == '/' else ''} {suite}"
    return f"{line} {components}".rstrip() if suite != "/" else f"{line}"


def signed_repo(
    name: str, url: str, key_url: str, suite: str = "/", components: str = ""
) -> OperationMeta:
    """Add the key and source of one repository; run ``apt-get update`` when either changed.

    Returns the meta of the update, so callers can chain on it.
    """
    key_path = f"{KEYRINGS}/{name}.asc"
    files.directory(name=f"Keyring directory for {name}", path=KEYRINGS, mode="0755")
    key = files.download(name=f"Signing key of {name}", src=key_url, dest=key_path, mode="0644")
    line = source_line(url, key_path, suite, components)
    source = files.put(
        name=f"apt source {name}",
        src=StringIO(line + "\n"),
        dest=f"/etc/apt/sources.list.d/{name}.list",
        mode="0644",
    )
    return apt.update(
        name=f"Refresh apt index for {name}",
        _if=lambda: key.did_change() or source.did_change(),
    )


def pinned(packages: list[str], version: str) -> list[str]:
    """``pkg=version`` for each package when a version is pinned."""
    return [f"{package}={version}" if version else package for package in packages]


@operation()
def kernel_headers(package: str, kernel: str):
    """
    Install the headers for the running kernel, or stop with the kernel and package named.

    + package: the headers package (e.g. ``linux-headers-6.1.0-18-amd64``)
    + kernel: the running kernel (``uname -r``), for the message

    Checked when it runs (not when pyinfra plans), because the repository that provides the
    package may be added earlier in the same deploy.

    **Example:**

    .. code:: python

        kernel_headers(package=f"linux-headers-{kernel}", kernel=kernel)
    """
    if package in host.get_fact(DebPackages):
        host.noop(f"{package} is installed")
        return
    message = (
        f"kernel headers for the running kernel {kernel} are not available: no apt source "
        f"has package {package}. DKMS needs them to build the GPU module. Add a source that "
        f"has them, or boot a kernel the distribution ships, then re-run."
    )
    yield StringCommand(
        f"if ! apt-cache show {package} >/dev/null 2>&1; then "
        f"echo 'ERROR: {message}' >&2; exit 1; fi; "
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {package}"
    )
