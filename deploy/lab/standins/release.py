#!/usr/bin/env python3
"""Release archives of the STAND-INS, shaped like the real projects' downloads, and a tiny
HTTP file server to serve them to hosts (loopback, or a podman bridge address).

    ollama-linux-amd64.tar.zst              bin/ollama (the stand-in) + lib/ollama/
    llama-swap_<version>_linux_amd64.tar.gz llama-swap (the stand-in)

Each executable is ``#!/usr/bin/env python3`` with the stand-in module copied in (stdlib only,
so a bare Debian host with python3 runs it) and its VERSION set to the release's version.
Archives are byte-for-byte reproducible (fixed mtimes and owners), so the sha256 of a given
version never changes between builds. A ``sha256sum.txt`` lists them all.

Python::

    releases = build_releases(tmp_path)            # {"ollama": Release, "llama-swap": Release}
    with serve_releases(tmp_path, host="127.0.0.1") as server:
        url = server.url_for(releases["ollama"])   # http://127.0.0.1:<port>/ollama-linux-amd64.tar.zst

CLI::

    python3 deploy/lab/standins/release.py build OUT_DIR
        [--ollama-version V] [--llama-swap-version V]
    python3 deploy/lab/standins/release.py serve OUT_DIR [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXED_MTIME = 1_700_000_000  # reproducible archives: the same bytes on every build


def standin_version(module: str) -> str:
    """The VERSION a stand-in module declares (read from its source, not imported)."""
    match = re.search(r'^VERSION = "([^"]+)"$', (HERE / module).read_text(), re.MULTILINE)
    if not match:
        raise ValueError(f"{HERE / module}: no VERSION line")
    return match.group(1)


class ReleaseError(Exception):
    """A release cannot be built on this machine (a tool is missing)."""


@dataclass(frozen=True)
class Release:
    """One built archive: what it is, where it lies, and its sha256."""

    name: str  # "ollama" or "llama-swap"
    version: str
    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name


def _executable(module: str, version: str) -> bytes:
    source = (HERE / module).read_text()
    source, count = re.subn(
        r'^VERSION = "[^"]+"$', f'VERSION = "{version}"', source, flags=re.MULTILINE
    )
    if count != 1:
        raise ValueError(f"{HERE / module}: expected exactly one VERSION line")
    if not source.startswith("#!"):
        source = "#!/usr/bin/env python3\n" + source
    return source.encode()


def _tar(entries: list[tuple[str, bytes | None, int]]) -> bytes:
    """A reproducible tar of (name, data or None for a directory, mode)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.uid, info.gid = FIXED_MTIME, mode, 0, 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _write_tgz(path: Path, entries: list[tuple[str, bytes | None, int]]) -> str:
    """Write a reproducible .tar.gz of ``entries`` (see ``_tar``); its sha256."""
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(_tar(entries))
    return _write_atomically(path, packed.getvalue())


def _write_tar_zst(path: Path, entries: list[tuple[str, bytes | None, int]]) -> str:
    """Write a reproducible .tar.zst of ``entries`` with the ``zstd`` tool (Python 3.11 has no
    zstd module); its sha256. The same zstd version and level give the same bytes."""
    zstd = shutil.which("zstd")
    if zstd is None:
        raise ReleaseError(
            "the zstd tool is missing (Ollama >= 0.14 releases are .tar.zst): apt-get install zstd"
        )
    packed = subprocess.run(
        [zstd, "-q", "-19", "-c"], input=_tar(entries), capture_output=True, check=True
    ).stdout
    return _write_atomically(path, packed)


def _write_atomically(path: Path, data: bytes) -> str:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def build_ollama_release(out_dir: Path, version: str | None = None) -> Release:
    """``ollama-linux-amd64.tar.zst`` like Ollama's: ``bin/ollama`` + ``lib/ollama/``.

    The stand-in behaves as Ollama >= 0.14.0 (/v1/responses, /v1/messages), whose Linux
    archives are .tar.zst; earlier releases were .tgz.
    """
    version = version or standin_version("ollama.py")
    notice = (
        f"Ollama STAND-IN {version} (modelfleet deploy/lab/standins/ollama.py): simulated models, "
        "no GPU libraries. Unpack like the real release: "
        "tar -C /usr -xf ollama-linux-amd64.tar.zst (with zstd installed)\n"
    ).encode()
    path = Path(out_dir) / "ollama-linux-amd64.tar.zst"
    sha = _write_tar_zst(
        path,
        [
            ("bin", None, 0o755),
            ("bin/ollama", _executable("ollama.py", version), 0o755),
            ("lib", None, 0o755),
            ("lib/ollama", None, 0o755),
            ("lib/ollama/STANDIN.txt", notice, 0o644),
        ],
    )
    return Release("ollama", version, path, sha)


def build_llama_swap_release(out_dir: Path, version: str | None = None) -> Release:
    """``llama-swap_<version>_linux_amd64.tar.gz`` like llama-swap's: one ``llama-swap``."""
    version = version or standin_version("llama_swap.py")
    number = version.removeprefix("v")
    path = Path(out_dir) / f"llama-swap_{number}_linux_amd64.tar.gz"
    sha = _write_tgz(path, [("llama-swap", _executable("llama_swap.py", number), 0o755)])
    return Release("llama-swap", number, path, sha)


def build_releases(
    out_dir: str | Path, ollama_version: str | None = None, llama_swap_version: str | None = None
) -> dict[str, Release]:
    """Build both archives into ``out_dir`` and write ``sha256sum.txt``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    releases = {
        "ollama": build_ollama_release(out, ollama_version),
        "llama-swap": build_llama_swap_release(out, llama_swap_version),
    }
    sums = "".join(f"{r.sha256}  {r.filename}\n" for r in releases.values())
    (out / "sha256sum.txt").write_text(sums)
    return releases


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class ReleaseServer:
    """A running file server; ``url`` has no trailing slash."""

    url: str
    httpd: http.server.ThreadingHTTPServer

    def url_for(self, release: Release | str) -> str:
        name = release.filename if isinstance(release, Release) else release
        return f"{self.url}/{name}"


@contextlib.contextmanager
def serve_releases(
    directory: str | Path, host: str = "127.0.0.1", port: int = 0
) -> Iterator[ReleaseServer]:
    """Serve ``directory`` over HTTP in a thread until the block ends.

    ``host`` is 127.0.0.1 for the local machine, or the podman bridge gateway (e.g. 10.88.0.1)
    so container hosts can download from it. ``port`` 0 picks a free one.
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="release-server", daemon=True)
    thread.start()
    try:
        yield ReleaseServer(f"http://{host}:{httpd.server_address[1]}", httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="stand-in release archives and file server")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the archives, print their sha256 as JSON")
    build.add_argument("out_dir", type=Path)
    build.add_argument("--ollama-version")
    build.add_argument("--llama-swap-version")
    serve = sub.add_parser("serve", help="serve a directory over HTTP until interrupted")
    serve.add_argument("directory", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.command == "build":
        releases = build_releases(args.out_dir, args.ollama_version, args.llama_swap_version)
        report = {
            name: {"file": str(r.path), "version": r.version, "sha256": r.sha256}
            for name, r in releases.items()
        }
        print(json.dumps(report, indent=2))
        return 0
    if not args.directory.is_dir():
        print(f"Error: {args.directory} is not a directory", file=sys.stderr)
        return 1
    with serve_releases(args.directory, args.host, args.port) as server:
        print(f"serving {args.directory} at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
