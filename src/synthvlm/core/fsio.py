"""Run-directory storage: local paths or any fsspec URL, with one rule for writing a file atomically.

A run directory is a local `Path` (plain paths and `file://` URLs) or a `UPath` on an fsspec filesystem
(`s3://`, `gs://`, `memory://`, ...). Every output is written whole or not at all: locally under a
temporary name in the same folder, flushed, fsynced and renamed; on a remote filesystem (object stores
have no rename) into a local temporary file first, then uploaded to its final name in one PUT, which
readers see whole or not at all. Either way a task's completion record is written last, so an output
without one is a leftover that its task overwrites when it reruns.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from synthvlm.core.errors import UserError, writing

RunPath = Path | UPath
"""A run-directory path: a local `Path`, or a `UPath` on a remote fsspec filesystem."""

_LOCAL_PROTOCOLS = ("", "file", "local")
_MANGLED_URL = re.compile(r"^([a-z][a-z0-9+.-]*):/[^/]")


def run_path(path: str | os.PathLike[str] | UPath) -> RunPath:
    """The path a run directory (or export folder) names: a local `Path`, or a `UPath` for a URL.

    A URL's filesystem is loaded here, so a missing fsspec backend (s3fs, gcsfs) is a one-line error.
    """
    if isinstance(path, UPath) and path.protocol not in _LOCAL_PROTOCOLS:
        return path
    if isinstance(path, Path):
        _refuse_mangled_url(path)
        return path
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if "://" not in text:
        return Path(text)
    try:
        upath = UPath(text)
        if upath.protocol in _LOCAL_PROTOCOLS:
            return Path(upath.path)
        upath.fs  # noqa: B018 -- imports the protocol's fsspec backend now
    except ImportError as exc:
        raise UserError(f"{text}: {exc} (pip install it next to synthvlm)") from None
    except ValueError as exc:
        raise UserError(f"{text}: {exc}") from None
    return upath


def _refuse_mangled_url(path: Path) -> None:
    """A URL that went through `Path()` lost a slash (`s3://b/r` -> `s3:/b/r`): say so instead of a miss."""
    import fsspec

    match = _MANGLED_URL.match(str(path))
    if match and match.group(1) in fsspec.available_protocols():
        url = str(path).replace(":/", "://", 1)
        raise UserError(
            f"{url}: this command takes a local path, not a URL; only `synthvlm run`, `status`, `validate` "
            "and the stage commands accept fsspec URLs (s3://, gs://, ...)"
        )


def is_local(path: RunPath) -> bool:
    """Whether `path` is on the local filesystem (written with temporary files and renames)."""
    return isinstance(path, Path)


def absolute(path: RunPath) -> str:
    """The absolute form of a path as a string: a resolved local path, or the URL."""
    return str(path.resolve()) if is_local(path) else str(path)


def local_root(run_dir: RunPath) -> Path:
    """Where a run keeps what must be local files (built models, the judge's SQLite cache).

    The run directory itself when it is local; else a folder in the user's cache named by the run's URL.
    """
    if is_local(run_dir):
        return run_dir
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "synthvlm" / "runs" / hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


Written = dict[str, tuple[int, str]]
"""Files written atomically: absolute path or URL -> (bytes, sha256 hex)."""

_recording: ContextVar[Written | None] = ContextVar("synthvlm_written", default=None)


@contextmanager
def recording_writes() -> Iterator[Written]:
    """Collect the size and sha256 of every file written atomically inside the block (in this thread)."""
    written: Written = {}
    token = _recording.set(written)
    try:
        yield written
    finally:
        _recording.reset(token)


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(bytes, sha256 hex) of a local file."""
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return os.path.getsize(path), digest


def _record(path: RunPath, tmp: Path) -> None:
    written = _recording.get()
    if written is not None:
        written[absolute(path)] = file_digest(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike[str] | UPath) -> Iterator[Path]:
    """Yield a local temporary path to write; on success it becomes `path` whole, on error it is removed.

    Locally: fsync, then rename onto `path`. Remotely: one upload to `path` (a single object PUT). Inside
    `recording_writes`, the finished file's size and sha256 are recorded. Running out of space is a
    UserError naming the file (`errors.writing`); the temporary file is gone either way.
    """
    path = run_path(path)
    if is_local(path):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with writing(path):  # a full disk is the user's to fix: one line naming the file
                path.parent.mkdir(parents=True, exist_ok=True)
                yield tmp
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                _record(path, tmp)
                os.replace(tmp, path)
                _fsync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="synthvlm-") as folder:
        tmp = Path(folder) / path.name
        with writing(tmp):  # the local temporary file is what fills a disk here
            yield tmp
            _record(path, tmp)
        path.parent.mkdir(parents=True, exist_ok=True)  # no-op on object stores
        path.fs.put_file(str(tmp), path.path)


def remove_stale_temps(folder: RunPath) -> None:
    """Delete temporary files left under `folder` by killed writers (remote writes leave none there)."""
    if is_local(folder):
        for stale in folder.rglob(".*.tmp-*"):
            stale.unlink()


def remove_tree(path: RunPath) -> None:
    """Delete a folder and everything under it, if it exists."""
    if is_local(path):
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.fs.rm(path.path, recursive=True)


@contextmanager
def local_copy(path: RunPath) -> Iterator[Path]:
    """Yield a local file with the content of `path`: the file itself, or a temporary download."""
    if is_local(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="synthvlm-") as folder:
        tmp = Path(folder) / path.name
        path.fs.get_file(path.path, str(tmp))
        yield tmp


def write_bytes(path: str | os.PathLike[str] | UPath, data: bytes) -> None:
    """Atomically replace `path` with `data`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str] | UPath, obj: Any) -> None:
    """Atomically write `obj` as pretty, key-sorted JSON (stable bytes for equal content)."""
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def read_json(path: str | os.PathLike[str] | UPath) -> Any:
    """Read a JSON file written by `write_json`."""
    return json.loads(run_path(path).read_text(encoding="utf-8"))


def write_table(path: str | os.PathLike[str] | UPath, table: pa.Table) -> None:
    """Atomically write a Parquet file (zstd); equal tables give equal bytes."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_table(path: RunPath, *, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file from a local or remote path."""
    if is_local(path):
        return pq.read_table(path, columns=columns)
    with path.open("rb") as fh:
        return pq.read_table(fh, columns=columns)


def parquet_rows(path: RunPath) -> int:
    """Rows of a Parquet file, from its footer only."""
    if is_local(path):
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as fh:
        return pq.ParquetFile(fh).metadata.num_rows
