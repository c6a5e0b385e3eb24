"""Verified downloads and versioned release directories, shared by the backend roles.

pyinfra's ``files.download`` moves the file into place *before* it checks the checksum, so a
bad download is left at the destination. These operations download to a temporary name next
to the destination, check the sha256, and only then rename: a destination that exists is
always a verified file.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence

from pyinfra import host
from pyinfra.api import (
    FactBase,
    OperationError,
    QuoteString,
    StringCommand,
    operation,
)
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Directory, File, Sha256File

from modelfleet.deploy.plan import BackendInstance

SHA256_HEX_LENGTH = 64


def check_sha256(value: str, what: str) -> str:
    """Return ``value`` lower-cased, or raise naming ``what`` when it is not a sha256 digest."""
    digest = value.strip().lower()
    if len(digest) != SHA256_HEX_LENGTH or any(c not in "0123456789abcdef" for c in digest):
        raise OperationError(f"{what}: {value!r} is not a sha256 hex digest (64 hex characters)")
    return digest


@operation()
def verified_download(
    src: str,
    dest: str,
    sha256: str,
    mode: str | None = None,
    user: str | None = None,
    group: str | None = None,
):
    """
    Download ``src`` to ``dest`` only when ``dest`` is missing or has another sha256.

    + src: URL of the file (http, https or file)
    + dest: where the verified file ends up
    + sha256: expected sha256 of the file; a mismatch fails the operation and leaves ``dest``
      untouched
    + mode/user/group: applied to the verified file before the rename

    **Example:**

    .. code:: python

        verified_download(
            name="Download llama-swap 0.0.1",
            src="http://10.88.0.1:8000/llama-swap_0.0.1_linux_amd64.tar.gz",
            dest="/opt/llama-swap/downloads/llama-swap_0.0.1_linux_amd64.tar.gz",
            sha256="4f9c...",
        )
    """
    digest = check_sha256(sha256, f"sha256 of {src}")
    info = host.get_fact(File, path=dest)
    if info is False:
        raise OperationError(f"{dest} exists and is not a file")
    if info and host.get_fact(Sha256File, path=dest) == digest:
        host.noop(f"{dest} is present with sha256 {digest[:12]}")
        return

    partial = f"{dest}.part-{digest[:12]}"
    yield StringCommand("mkdir", "-p", QuoteString(posixpath.dirname(dest)))
    # Quoted with shlex: the URL and paths come from inventory data.
    part, url = shlex.quote(partial), shlex.quote(src)
    yield (
        f"curl -fsSL --retry 3 -o {part} {url} || "
        f"{{ rm -f {part}; echo {shlex.quote(f'download failed: {src}')} >&2; exit 1; }}"
    )
    yield (
        f"echo {shlex.quote(f'{digest}  {partial}')} | sha256sum -c --quiet - >/dev/null 2>&1 || "
        f"{{ echo {shlex.quote(f'sha256 mismatch for {src}: expected {digest}, got')} "
        f"$(sha256sum {part} | cut -c1-64) >&2; rm -f {part}; exit 1; }}"
    )
    if user or group:
        owner = f"{user or ''}:{group or ''}".rstrip(":")
        yield StringCommand("chown", owner, QuoteString(partial))
    if mode:
        yield StringCommand("chmod", mode, QuoteString(partial))
    yield StringCommand("mv", "-f", QuoteString(partial), QuoteString(dest))


@operation()
def unpacked_release(archive: str, dest: str, strip_components: int = 0):
    """
    Unpack a tar archive into the versioned directory ``dest``, once.

    The archive is unpacked into ``dest.partial`` and renamed, so ``dest`` either holds a
    complete release or does not exist. An existing ``dest`` is never touched again: a new
    version gets a new directory.

    + archive: path of the (already verified) archive on the host; ``.tgz``/``.tar.gz``/``.tar``
    + dest: the versioned release directory, e.g. ``/opt/ollama/releases/0.12.6``
    + strip_components: leading path parts to drop, as ``tar --strip-components``

    **Example:**

    .. code:: python

        unpacked_release(
            name="Unpack Ollama 0.12.6",
            archive="/opt/ollama/downloads/ollama-linux-amd64-0.12.6.tgz",
            dest="/opt/ollama/releases/0.12.6",
        )
    """
    if host.get_fact(Directory, path=dest):
        host.noop(f"{dest} is already unpacked")
        return
    partial = f"{dest}.partial"
    yield StringCommand("rm", "-rf", QuoteString(partial))
    yield StringCommand("mkdir", "-p", QuoteString(partial))
    strip = [f"--strip-components={strip_components}"] if strip_components else []
    yield StringCommand("tar", "-xf", QuoteString(archive), "-C", QuoteString(partial), *strip)
    yield StringCommand("mv", "-T", QuoteString(partial), QuoteString(dest))


class GgufFiles(FactBase[list[str]]):
    """Names of the ``*.gguf`` files directly in ``directory`` (sorted; [] when it is missing)."""

    def command(self, directory: str) -> str:
        quoted = shlex.quote(directory)
        return (
            f"find {quoted} -maxdepth 1 -type f -name '*.gguf' -printf '%f\\n' 2>/dev/null || true"
        )

    @staticmethod
    def default() -> list[str]:
        return []

    def process(self, output: list[str]) -> list[str]:
        return sorted(line.strip() for line in output if line.strip())


@operation()
def pruned_ggufs(directory: str, keep: list[str]):
    """
    Delete the ``*.gguf`` files in ``directory`` that are not in ``keep``.

    + directory: a models directory
    + keep: file names to keep

    **Example:**

    .. code:: python

        pruned_ggufs(directory="/var/lib/modelfleet/models", keep=["gemma-3-270m-q4_k_m.gguf"])
    """
    extra = [name for name in host.get_fact(GgufFiles, directory=directory) if name not in keep]
    if not extra:
        host.noop(f"{directory} holds only planned models")
        return
    for name in extra:
        yield StringCommand("rm", "-f", QuoteString(posixpath.join(directory, name)))


def gguf_files(instances: Sequence[BackendInstance], user: str, prune: bool) -> list[OperationMeta]:
    """Download every GGUF placed on ``instances`` (sha256-checked, once per file); with
    ``prune``, delete the other GGUF files in their models directories."""
    ops: list[OperationMeta] = []
    wanted: dict[str, set[str]] = {}
    seen: set[str] = set()
    for inst in instances:
        keep = wanted.setdefault(inst.models_dir, set())
        for model in inst.models:
            if model.gguf is None or model.gguf_path is None:
                continue
            keep.add(posixpath.basename(model.gguf_path))
            if model.gguf_path in seen:
                continue
            seen.add(model.gguf_path)
            ops.append(
                verified_download(
                    name=f"GGUF {model.name} ({model.gguf.file})",
                    src=model.gguf.url,
                    dest=model.gguf_path,
                    sha256=model.gguf.sha256,
                    user=user,
                    group=user,
                    mode="0644",
                )
            )
    if prune:
        for models_dir, keep in sorted(wanted.items()):
            ops.append(
                pruned_ggufs(
                    name=f"Prune GGUF files in {models_dir}",
                    directory=models_dir,
                    keep=sorted(keep),
                )
            )
    return ops
