"""WebDataset tar shards: writing them with deterministic bytes, and the one sample reader (one key rule)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

EXTENSIONS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
"""Image file extension -> Pillow format name."""


def encode(image: Image.Image, *, fmt: str, quality: int) -> bytes:
    """Encode an RGB image; JPEG/WebP at `quality`, PNG lossless."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format=EXTENSIONS[fmt], quality=quality)
    return buf.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Append a file with fixed metadata, so equal content gives equal tar bytes."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def json_bytes(obj: dict[str, Any]) -> bytes:
    """Stable JSON encoding for per-sample metadata."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()


class TarShardWriter:
    """Encodes and appends samples on a background thread, in submission order, off the model's path."""

    def __init__(self, path: Path, *, fmt: str, quality: int) -> None:
        self._tar = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: list[Future[None]] = []
        self.fmt, self.quality = fmt, quality

    def submit(self, key: str, image: Image.Image, meta: dict[str, Any]) -> None:
        """Queue one sample: `<key>.<ext>` and `<key>.json`."""
        self._pending.append(self._pool.submit(self._write, key, image, meta))

    def _write(self, key: str, image: Image.Image, meta: dict[str, Any]) -> None:
        add_member(self._tar, f"{key}.{self.fmt}", encode(image, fmt=self.fmt, quality=self.quality))
        add_member(self._tar, f"{key}.json", json_bytes(meta))

    def close(self) -> None:
        """Wait for every queued sample (re-raising encoder errors) and close the tar."""
        try:
            for fut in self._pending:
                fut.result()
        finally:
            self._pool.shutdown()
            self._tar.close()


def iter_tar(path: Path, names: set[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """Stream (member name, bytes) from a tar, optionally only the named members."""
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if member.isfile() and (names is None or member.name in names):
                fh = tar.extractfile(member)
                assert fh is not None
                yield member.name, fh.read()


def sample_key(name: str) -> tuple[str, str]:
    """WebDataset's split of a member name: the key runs up to the first dot of the base name (its folder
    kept), the extension is the rest: `a/b.c.jpg` -> (`a/b`, `c.jpg`)."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def iter_samples(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The samples of an open tar in order, as (key, {extension: bytes}); adjacent members with one key
    form one sample, as WebDataset groups them (a key that comes back later is a second sample)."""
    key: str | None = None
    parts: dict[str, bytes] = {}
    for member in tar:
        if not member.isfile():
            continue
        member_key, ext = sample_key(member.name)
        if member_key != key and key is not None:
            yield key, parts
            parts = {}
        key = member_key
        fh = tar.extractfile(member)
        assert fh is not None
        parts[ext] = fh.read()
    if key is not None:
        yield key, parts
