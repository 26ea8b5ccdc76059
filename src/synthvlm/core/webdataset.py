"""WebDataset tar shards: writing them with deterministic bytes, and the one sample reader (one key rule)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
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


def encode_samples(
    samples: list[tuple[str, Image.Image, dict[str, Any]]], *, fmt: str, quality: int, workers: int
) -> list[tuple[str, bytes]]:
    """The tar members of samples `(key, image, meta)`: `<key>.<ext>` then `<key>.json` each, in order.

    Images encode on `workers` threads (Pillow releases the GIL), so a batch is ready to commit
    milliseconds after the model returns it.
    """
    from synthvlm.core.parallel import map_in_threads

    blobs = map_in_threads(lambda s: encode(s[1], fmt=fmt, quality=quality), samples, workers)
    members = []
    for (key, _, meta), blob in zip(samples, blobs, strict=True):
        members += [(f"{key}.{fmt}", blob), (f"{key}.json", json_bytes(meta))]
    return members


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
