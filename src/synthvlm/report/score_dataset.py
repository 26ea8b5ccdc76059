"""Score an existing image-caption dataset with exactly the pipeline's metrics, for the paper's Table 4.

Every pair goes through the same code the score stage runs: the image bytes are decoded with
``Image.open(...).convert("RGB")``, CLIPScore is ``clip_score`` of ``ClipScorer.embed``'s cosines (its
embeddings are kept, as the score stage keeps them, for the gap to a reference set) and SSIM is
``paper_ssim_batch`` with the sizes and data range of a `ScoreConfig`, so a number here and a number in a
run mean the same thing. Sources:

- ``coco``: a COCO captions JSON plus the image folder (one pair per annotation);
- ``llava``: a LLaVA JSON plus the image folder (one pair per item, caption = first gpt turn);
- ``webdataset``: tar shards (a file, a folder of ``*.tar`` or a glob); caption from ``.txt`` or ``.json``;
- ``parquet``: files with a ``caption``/``text`` column and an ``image`` column of bytes or
  ``{"bytes", "path"}`` structs (the Hugging Face layout, as ``synthvlm export`` writes it);
- ``run``: a synthvlm run directory: its selected set, with images from the generate shards.

Every source row becomes one output row: scored (``status == "ok"``) or not, with the reason
(``missing_image``, ``unreadable_image``, or the ingest reader's reason for a record it cannot use).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthvlm.config import ScoreConfig
from synthvlm.core import fsio, schema
from synthvlm.core.errors import UserError
from synthvlm.core.webdataset import iter_samples
from synthvlm.score.clip import scorer_for
from synthvlm.score.ssim import DEFINITIONS

SCORES_FILE = "scores.parquet"
EMBEDDINGS_FILE = "embeddings.parquet"
SUMMARY_FILE = "summary.json"
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


# ------------------------------------------------------------------------------------------- scoring


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


def embedding_key(row: dict[str, Any]) -> str:
    """The key of a scored pair's embeddings row: its `id`, or `#<index>` when the source gives none."""
    return row["id"] if row["id"] is not None else f"#{row['index']}"


def score_pairs(
    pairs: Iterator[Pair], *, score: ScoreConfig, scorer: Any, on_rows: Callable[[int], None] = lambda n: None
) -> tuple[pa.Table, pa.Table]:
    """Score pairs with the score stage's definitions: a `schema.SCORED_PAIR` table in source order, and the
    scored pairs' CLIP embeddings (`schema.EMBEDDINGS`, float16 as the score stage stores them) in its
    order, keyed by `embedding_key`."""
    import torch
    from PIL import Image

    from synthvlm.score.clip import clip_score
    from synthvlm.score.ssim import paper_ssim_batch

    rows: list[dict[str, Any]] = []
    batch: list[tuple[dict[str, Any], Image.Image, bytes]] = []
    vectors: list[pa.Table] = []
    # SSIM depends on the image alone (COCO has five captions per image): computed once per distinct
    # image content, keyed by a hash of the bytes since names may repeat across different images.
    ssim_cache: dict[bytes, float] = {}

    def flush() -> None:
        images = [im for _, im, _ in batch]
        cosines, image_emb, text_emb = scorer.embed(images, [r["caption"] for r, _, _ in batch])
        clip = clip_score(cosines)
        vectors.append(schema.embeddings_table([embedding_key(r) for r, _, _ in batch], image_emb, text_emb))
        todo = {digest: im for _, im, digest in batch if digest not in ssim_cache}
        values = paper_ssim_batch(
            list(todo.values()),
            size=score.ssim_size,
            low=score.ssim_low,
            data_range=score.ssim_data_range,
            workers=torch.get_num_threads(),
        )
        ssim_cache.update(zip(todo, values.tolist(), strict=True))
        for (row, _, digest), c in zip(batch, clip, strict=True):
            s = ssim_cache[digest]
            row.update(clip=float(c), ssim=s, weighted=float(c + score.ssim_weight * s))
        on_rows(len(batch))
        batch.clear()

    for pair in pairs:
        row = {
            "index": pair.index,
            "id": pair.id,
            "caption": pair.caption,
            "image": pair.image,
            "status": pair.reason or "ok",
            "detail": pair.detail,
        }
        rows.append(row)
        if pair.reason is not None:
            on_rows(1)
            continue
        assert pair.data is not None
        decoded = decode(pair.data)
        if isinstance(decoded, str):
            row.update(status="unreadable_image", detail=decoded, width=None, height=None)
            on_rows(1)
            continue
        image, width, height = decoded
        row.update(width=width, height=height)
        batch.append((row, image, hashlib.blake2b(pair.data, digest_size=16).digest()))
        if len(batch) == score.batch_size:
            flush()
    if batch:
        flush()
    full = [{**dict.fromkeys(schema.SCORED_PAIR.names), **r} for r in rows]
    embeddings = pa.concat_tables(vectors) if vectors else schema.EMBEDDINGS.empty_table()
    return pa.Table.from_pylist(full, schema=schema.SCORED_PAIR), embeddings.combine_chunks()


def summarize(table: pa.Table, *, name: str, source: str, fmt: str, score: ScoreConfig) -> dict[str, Any]:
    """The Table-4 row of a scored dataset: counts, failures by reason, mean CLIP, SSIM and weighted."""
    import pyarrow.compute as pc

    ok = table.filter(pc.equal(table.column("status"), "ok"))
    failed: dict[str, int] = {}
    for status in table.column("status").to_pylist():
        if status != "ok":
            failed[status] = failed.get(status, 0) + 1

    def mean(col: str) -> float | None:
        return pc.mean(ok.column(col)).as_py() if ok.num_rows else None

    return {
        "name": name,
        "source": source,
        "format": fmt,
        "pairs": table.num_rows,
        "scored": ok.num_rows,
        "failed": dict(sorted(failed.items())),
        "images": len(set(ok.column("image").to_pylist())),
        "clip_mean": mean("clip"),
        "ssim_mean": mean("ssim"),
        "weighted_mean": mean("weighted"),
        "score": score.model_dump(mode="json", exclude={"device", "batch_size"}),
        "ssim_definition": DEFINITIONS[score.ssim_data_range],
    }


def score_dataset(
    source: str | Path,
    *,
    out: str | Path,
    fmt: str = "auto",
    images: str | Path | None = None,
    score: ScoreConfig | None = None,
    name: str | None = None,
    reference: str | Path | None = None,
    reference_format: str = "auto",
    reference_images: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score every pair of a dataset into `out/scores.parquet`, its CLIP embeddings into
    `out/embeddings.parquet` and the Table-4 row into `out/summary.json`; returns the summary.

    With `reference` (any source this reads), the summary's "reference" key holds the gap between the
    scored dataset and the reference (`reference.gap_metrics`), the reference embedded with the same CLIP.
    """
    from synthvlm.report.reference import embed_reference, gap_metrics, stored_set

    score = score or ScoreConfig()
    out = Path(out)
    if fmt == "auto":
        fmt = detect_source(source)
    scorer = scorer_for(score, models_dir=out / "models")
    # The reference first: a mistake in its arguments shows before the source is scored.
    described = None
    if reference is not None:
        described, real = with_counter(
            "reference",
            progress,
            lambda step: embed_reference(
                reference, fmt=reference_format, images=reference_images, scorer=scorer, on_rows=step
            ),
        )
    pairs = iter_pairs(source, fmt=fmt, images=images)
    table, embeddings = with_counter(
        "scoring", progress, lambda step: score_pairs(pairs, score=score, scorer=scorer, on_rows=step)
    )
    summary = summarize(
        table, name=name or Path(source).stem, source=str(Path(source).resolve()), fmt=fmt, score=score
    )
    if described is not None:
        import pyarrow.compute as pc

        ok = table.filter(pc.equal(table.column("status"), "ok"))
        scored = stored_set(embeddings, ok.column("image").to_pylist())
        summary["reference"] = {**described, **gap_metrics(real, scored, name="dataset")}
    fsio.write_table(out / SCORES_FILE, table)
    fsio.write_table(out / EMBEDDINGS_FILE, embeddings)
    fsio.write_json(out / SUMMARY_FILE, summary)
    return summary


def with_counter(what: str, enabled: bool, work: Callable[[Callable[[int], None]], Any]) -> Any:
    """`work(step)` under a rich counter of the pairs `step` reports done (label `what`), or a no-op step."""
    if not enabled:
        return work(lambda n: None)
    from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{what}"), MofNCompleteColumn(), TextColumn("pairs"), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task(what, total=None)
        return work(lambda n: bar.advance(task, n))
