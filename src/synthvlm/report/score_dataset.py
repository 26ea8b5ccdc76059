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

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthvlm.config import ScoreConfig
from synthvlm.core import fsio, schema
from synthvlm.report.diversity import vendi_score
from synthvlm.report.reference import embed_reference, gap_metrics, stored_set
from synthvlm.report.sources import Pair, decode, detect_source, iter_pairs
from synthvlm.score.clip import scorer_for
from synthvlm.score.pairs import scorers_for
from synthvlm.score.ssim import DEFINITIONS

SCORES_FILE = "scores.parquet"
EMBEDDINGS_FILE = "embeddings.parquet"
SUMMARY_FILE = "summary.json"


# ------------------------------------------------------------------------------------------- scoring


def embedding_key(row: dict[str, Any]) -> str:
    """The key of a scored pair's embeddings row: its `id`, or `#<index>` when the source gives none."""
    return row["id"] if row["id"] is not None else f"#{row['index']}"


def score_pairs(
    pairs: Iterator[Pair],
    *,
    score: ScoreConfig,
    scorer: Any,
    scorers: Sequence[Any] = (),
    on_rows: Callable[[int], None] = lambda n: None,
) -> tuple[pa.Table, pa.Table]:
    """Score pairs with the score stage's definitions: a `schema.scored_pair_schema` table in source order
    (the opt-in `scorers`' columns included), and the scored pairs' CLIP embeddings (`schema.EMBEDDINGS`,
    float16 as the score stage stores them) in its order, keyed by `embedding_key`."""
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
        captions = [r["caption"] for r, _, _ in batch]
        for pair_scorer in scorers:
            for column, values in pair_scorer.score(images, captions).items():
                for (row, _, _), value in zip(batch, values.tolist(), strict=True):
                    row[column] = value
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
    table_schema = schema.scored_pair_schema([s.name for s in scorers])
    full = [{**dict.fromkeys(table_schema.names), **r} for r in rows]
    embeddings = pa.concat_tables(vectors) if vectors else schema.EMBEDDINGS.empty_table()
    return pa.Table.from_pylist(full, schema=table_schema), embeddings.combine_chunks()


def summarize(
    table: pa.Table, embeddings: pa.Table, *, name: str, source: str, fmt: str, score: ScoreConfig
) -> dict[str, Any]:
    """The Table-4 row of a scored dataset: counts, failures by reason, the mean of every score column
    (`<column>_mean`: CLIP, SSIM, weighted and each opt-in scorer's), and the Vendi score of its distinct
    images' CLIP embeddings."""
    import pyarrow.compute as pc

    ok = table.filter(pc.equal(table.column("status"), "ok"))
    failed: dict[str, int] = {}
    for status in table.column("status").to_pylist():
        if status != "ok":
            failed[status] = failed.get(status, 0) + 1

    def mean(col: str) -> float | None:
        return pc.mean(ok.column(col)).as_py() if ok.num_rows else None

    distinct = stored_set(embeddings, ok.column("image").to_pylist()).image if ok.num_rows else None
    return {
        "name": name,
        "source": source,
        "format": fmt,
        "pairs": table.num_rows,
        "scored": ok.num_rows,
        "failed": dict(sorted(failed.items())),
        "images": len(set(ok.column("image").to_pylist())),
        **{f"{column}_mean": mean(column) for column in schema.score_columns(score.scorers.enabled())},
        "vendi": vendi_score(distinct) if distinct is not None and len(distinct) else None,
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
    score = score or ScoreConfig()
    out = Path(out)
    if fmt == "auto":
        fmt = detect_source(source)
    scorer = scorer_for(score, models_dir=out / "models")
    scorers = scorers_for(score, run_dir=fsio.run_path(out), models_dir=out / "models")
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
        "scoring",
        progress,
        lambda step: score_pairs(pairs, score=score, scorer=scorer, scorers=scorers, on_rows=step),
    )
    summary = summarize(
        table,
        embeddings,
        name=name or Path(source).stem,
        source=str(Path(source).resolve()),
        fmt=fmt,
        score=score,
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
