"""Image-caption pair sources: COCO and LLaVA files with their image folders, WebDataset shards, Parquet
files and a synthvlm run's selection, read pair by pair in source order with their image bytes.

`score-dataset` scores them and the report's reference gap embeds them; both read them through here, so a
pair means the same thing to either.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthvlm.core.errors import UserError
from synthvlm.core.webdataset import iter_samples

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
"""WebDataset members taken as the image of a sample, in order of preference."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One image-caption pair of a source, or the reason it cannot be scored (`reason` set)."""

    index: int
    id: str | None
    caption: str | None
    image: str | None
    data: bytes | None
    reason: str | None = None
    detail: str | None = None


# ------------------------------------------------------------------------------------------- sources


def _file_pairs(path: Path, images: Path | None, fmt: str) -> Iterator[Pair]:
    """COCO / LLaVA through the ingest readers, so records are judged exactly as `ingest` judges them."""
    from synthvlm.readers import BadRecord, UnreadableFileError, read

    if images is None:
        raise UserError(f"{path}: a {fmt} file names its images; pass the image folder with --images")
    if not images.is_dir():
        raise UserError(f"{images}: image folder not found")
    try:
        records = read(str(path), fmt=fmt)
    except UnreadableFileError as exc:
        raise UserError(str(exc)) from None
    for number, rec in enumerate(records, 1):
        if isinstance(rec, BadRecord):
            yield Pair(number, rec.source_id, rec.caption, None, None, rec.reason, rec.detail)
            continue
        if rec.image_ref is None:
            yield Pair(
                number, rec.source_id, rec.caption, None, None, "missing_image", "record names no image"
            )
            continue
        file = images / rec.image_ref
        if not file.is_file():
            detail = f"no file {rec.image_ref} in {images}"
            yield Pair(number, rec.source_id, rec.caption, rec.image_ref, None, "missing_image", detail)
            continue
        yield Pair(number, rec.source_id, rec.caption, rec.image_ref, file.read_bytes())


def _expand(source: Path, suffix: str) -> list[Path]:
    """A file, a folder (its `*<suffix>` files, sorted) or a glob."""
    if source.is_dir():
        files = sorted(source.glob(f"*{suffix}"))
    elif source.is_file():
        files = [source]
    else:
        files = sorted(Path(p) for p in glob.glob(str(source)) if os.path.isfile(p))
    if not files:
        raise UserError(f"{source}: no {suffix} files found")
    return files


def _webdataset_pairs(source: Path) -> Iterator[Pair]:
    number = 0
    for shard in _expand(source, ".tar"):
        with tarfile.open(shard, "r") as tar:
            for key, sample in iter_samples(tar):
                number += 1
                yield _webdataset_pair(number, key, {ext.lower(): data for ext, data in sample.items()})


def _webdataset_pair(number: int, key: str, sample: dict[str, bytes]) -> Pair:
    ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
    image = f"{key}.{ext}" if ext else None
    caption: Any = None
    if "txt" in sample:
        caption = sample["txt"].decode("utf-8", "replace")
    elif "json" in sample:
        try:
            caption = json.loads(sample["json"]).get("caption")
        except (ValueError, AttributeError):
            return Pair(number, key, None, image, None, "bad_record", "the .json member is not a JSON object")
    if not isinstance(caption, str):
        return Pair(number, key, None, image, None, "missing_field", "sample has no .txt and no json caption")
    if ext is None:
        return Pair(
            number, key, caption, None, None, "missing_image", f"sample has no {'/'.join(IMAGE_EXTENSIONS)}"
        )
    return Pair(number, key, caption, image, sample[ext])


def _parquet_pairs(source: Path) -> Iterator[Pair]:
    import pyarrow.parquet as pq

    number = 0
    for file in _expand(source, ".parquet"):
        parquet = pq.ParquetFile(file)
        names = parquet.schema_arrow.names
        caption_col = next((c for c in ("caption", "text") if c in names), None)
        if caption_col is None or "image" not in names:
            raise UserError(
                f"{file}: needs a caption (or text) column and an image column; has {', '.join(names)}"
            )
        id_col = next((c for c in ("key", "id") if c in names), None)
        columns = [c for c in (id_col, caption_col, "image") if c is not None]
        for batch in parquet.iter_batches(batch_size=256, columns=columns):
            ids = batch.column(id_col).to_pylist() if id_col else [None] * batch.num_rows
            for raw_id, caption, image in zip(
                ids, batch.column(caption_col).to_pylist(), batch.column("image").to_pylist(), strict=True
            ):
                number += 1
                pid = None if raw_id is None else str(raw_id)
                data, path = (
                    (image.get("bytes"), image.get("path")) if isinstance(image, dict) else (image, None)
                )
                ref = path or f"{file.name}#{number}"
                if not isinstance(caption, str):
                    yield Pair(
                        number, pid, None, ref, None, "missing_field", "caption is null or not a string"
                    )
                elif not data:
                    yield Pair(
                        number, pid, caption, ref, None, "missing_image", "image bytes are null or empty"
                    )
                else:
                    yield Pair(number, pid, caption, ref, data)


def _run_pairs(run: Path) -> Iterator[Pair]:
    import pyarrow.parquet as pq

    from synthvlm.core.webdataset import iter_tar

    files = sorted((run / "select" / "data").glob("part-*.parquet"))
    if not (run / "select" / "complete.json").exists() or not files:
        raise UserError(f"{run}: the run has no finished selection; run `synthvlm select --run {run}` first")
    rows = pq.read_table(files, columns=["key", "caption", "image_shard", "image_name"]).to_pylist()
    wanted: dict[str, set[str]] = {}
    for row in rows:
        wanted.setdefault(row["image_shard"], set()).add(row["image_name"])
    blobs = {
        (shard, name): data for shard in sorted(wanted) for name, data in iter_tar(run / shard, wanted[shard])
    }
    for number, row in enumerate(rows, 1):
        data = blobs.get((row["image_shard"], row["image_name"]))
        ref = f"{row['image_shard']}/{row['image_name']}"
        if data is None:
            yield Pair(
                number, row["key"], row["caption"], ref, None, "missing_image", "image missing from its shard"
            )
        else:
            yield Pair(number, row["key"], row["caption"], ref, data)


FORMATS = ("coco", "llava", "webdataset", "parquet", "run")
"""Source formats `score_dataset` reads; `auto` picks one with `detect_source`."""


def detect_source(source: str | Path) -> str:
    """Guess a source's format from its layout: run folder, Parquet, tar shards, or a COCO/LLaVA JSON."""
    from synthvlm.readers import detect_format

    path = Path(source)
    if path.is_dir():
        if (path / "config.yaml").is_file() and (path / "select").is_dir():
            return "run"
        if any(path.glob("*.parquet")):
            return "parquet"
        if any(path.glob("*.tar")):
            return "webdataset"
        raise UserError(f"{path}: a folder with no run, *.parquet or *.tar inside; pass --format")
    if not path.exists() and not glob.glob(str(path)):
        raise UserError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".tar"):
        return {".parquet": "parquet", ".tar": "webdataset"}[suffix]
    if suffix == ".json" and path.is_file():
        fmt = detect_format(str(path))
        if fmt in ("coco", "llava"):
            return fmt
        raise UserError(f"{path}: JSON that is neither COCO captions nor LLaVA; pass --format")
    raise UserError(f"{path}: cannot tell the format; pass --format ({', '.join(FORMATS)})")


def iter_pairs(source: str | Path, *, fmt: str = "auto", images: str | Path | None = None) -> Iterator[Pair]:
    """Every pair of a source in source order, with image bytes, or the reason it has none."""
    if fmt == "auto":
        fmt = detect_source(source)
    readers: dict[str, Callable[[], Iterator[Pair]]] = {
        "coco": lambda: _file_pairs(Path(source), Path(images) if images else None, "coco"),
        "llava": lambda: _file_pairs(Path(source), Path(images) if images else None, "llava"),
        "webdataset": lambda: _webdataset_pairs(Path(source)),
        "parquet": lambda: _parquet_pairs(Path(source)),
        "run": lambda: _run_pairs(Path(source)),
    }
    if fmt not in readers:
        raise UserError(f"unknown dataset format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    return readers[fmt]()


def decode(data: bytes | None) -> tuple[Any, int, int] | str:
    """Image bytes decoded as the score stage decodes them (RGB) with the stored width and height, or the
    first line of the reason they cannot be."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data or b""))
        size = (image.width, image.height)
        return image.convert("RGB"), *size
    except (ValueError, OSError, Image.DecompressionBombError) as exc:
        return str(exc).splitlines()[0]
