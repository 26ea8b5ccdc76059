"""The synthetic-vs-real gap: CMMD and PRDC between a synthetic and a real reference set, on CLIP embeddings.

Both sides are embedded by one CLIP model, prefix and image processor (one `ScoreConfig`), so a distance
between them is a distance between the datasets, not between models. The synthetic side's embeddings are
the ones its scoring stored (a run's `score/embeddings/`, or score-dataset's `embeddings.parquet`), read
back and never recomputed; the reference's are computed with `ClipScorer.embed`. The image side has one
point per distinct image (COCO has five captions per image: repeated points would shrink PRDC's k-NN balls
and weight CMMD by caption count), the text side one point per caption.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from synthvlm.core import fsio, layout, schema
from synthvlm.core.errors import UserError
from synthvlm.report.gap import cmmd, prdc, resolve_device

SIGMA = 10.0
"""CMMD's RBF bandwidth, the paper's (Jayasumana et al. 2024) for unit CLIP embeddings."""
SCALE = 1000.0
"""CMMD is reported x 1000, as the paper does."""
K = 5
"""PRDC's nearest-neighbour k, the paper's (Naeem et al. 2020) default."""
MAX_ROWS = 30_000
"""On the CPU, CMMD and PRDC see at most this many rows of each set (a seeded sample of a larger one): at
30K x 30K both stay exact and take about a minute or less each on 2 cores (docs/benchmarks.md). On a CUDA
device every row is used."""
SAMPLE_SEED = 0
"""Seed of the sample of a set larger than MAX_ROWS, so a report's numbers are reproducible."""
PRDC_KEYS = ("precision", "recall", "density", "coverage")
SIDES = ("image", "text")
_EMBED_BATCHES = 8
"""Reference images decoded and embedded this many CLIP batches at a time: memory stays bounded, and since
each chunk is a whole number of batches, the result is that of one `embed` call over the whole list."""


@dataclass(frozen=True, slots=True)
class EmbeddingSet:
    """Unit-length float64 CLIP embeddings of one set: `image` one row per distinct image, `text` one per
    caption."""

    image: np.ndarray
    text: np.ndarray


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows as float64 scaled to unit length: float16 storage leaves norms at 1 +- 5e-4, and both metrics are
    defined on unit vectors."""
    a = np.asarray(vectors, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def first_of_each(refs: Sequence[Any]) -> list[int]:
    """Positions of the first occurrence of each distinct value, in order: one image-side point per image."""
    seen: set[Any] = set()
    positions = []
    for i, ref in enumerate(refs):
        if ref not in seen:
            seen.add(ref)
            positions.append(i)
    return positions


def stored_set(table: pa.Table, image_refs: Sequence[Any]) -> EmbeddingSet:
    """The embedding set of stored `schema.EMBEDDINGS` rows whose images are `image_refs` (row by row)."""
    image = unit_rows(schema.embedding_matrix(table.column("image_emb")))
    text = unit_rows(schema.embedding_matrix(table.column("text_emb")))
    return EmbeddingSet(image=image[first_of_each(image_refs)], text=text)


# ------------------------------------------------------------------------------------------- reference


def embed_reference(
    source: str | Path,
    *,
    fmt: str,
    images: str | Path | None,
    scorer: Any,
    on_rows: Callable[[int], None] = lambda n: None,
) -> tuple[dict[str, Any], EmbeddingSet]:
    """CLIP embeddings of every usable pair of a reference dataset (any source score-dataset reads), and
    its description: source, format, pairs, embedded (`scored`), failures by reason, distinct images."""
    try:
        return _embed_reference(source, fmt=fmt, images=images, scorer=scorer, on_rows=on_rows)
    except UserError as exc:
        # The readers' words, said of the reference and its options (the scored source has its own).
        message = str(exc).replace("--format", "--reference-format").replace("--images", "--reference-images")
        raise UserError(f"reference: {message}") from None


def _embed_reference(
    source: str | Path, *, fmt: str, images: str | Path | None, scorer: Any, on_rows: Callable[[int], None]
) -> tuple[dict[str, Any], EmbeddingSet]:
    from synthvlm.report.sources import decode, detect_source, iter_pairs

    fmt = detect_source(source) if fmt == "auto" else fmt
    failed: dict[str, int] = {}
    refs: list[str | None] = []
    image_parts: list[np.ndarray] = []
    text_parts: list[np.ndarray] = []
    chunk: list[tuple[Any, str]] = []

    def flush() -> None:
        _, image_emb, text_emb = scorer.embed([im for im, _ in chunk], [c for _, c in chunk])
        image_parts.append(image_emb)
        text_parts.append(text_emb)
        on_rows(len(chunk))
        chunk.clear()

    count = 0
    for pair in iter_pairs(source, fmt=fmt, images=images):
        count += 1
        decoded = decode(pair.data) if pair.reason is None else None
        reason = pair.reason or (None if isinstance(decoded, tuple) else "unreadable_image")
        if reason is not None:
            failed[reason] = failed.get(reason, 0) + 1
            on_rows(1)
            continue
        assert isinstance(decoded, tuple) and pair.caption is not None
        chunk.append((decoded[0], pair.caption))
        refs.append(pair.image)
        if len(chunk) == scorer.batch_size * _EMBED_BATCHES:
            flush()
    if chunk:
        flush()
    if not refs:
        why = ", ".join(f"{r} {n}" for r, n in sorted(failed.items())) or "it has no pairs"
        raise UserError(f"{source}: no pair could be embedded ({why})")
    image = np.concatenate(image_parts)
    described = {
        "source": str(Path(source).resolve()),
        "format": fmt,
        "pairs": count,
        "scored": len(refs),
        "failed": dict(sorted(failed.items())),
        "images": len(set(refs)),
    }
    return described, EmbeddingSet(image=image[first_of_each(refs)], text=np.concatenate(text_parts))


def sample_rows(n: int, *, limit: int, seed: int = SAMPLE_SEED) -> np.ndarray | None:
    """Positions of the rows the gap metrics use out of n: None (all) when n <= limit, else `limit`
    positions drawn without replacement by numpy's default_rng(seed), in ascending order."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _sampling_note(totals: dict[str, dict[str, int]], *, device: str, limit: int | None, seed: int) -> str:
    """One sentence saying which rows the metrics used: all, or which sets were sampled."""
    if limit is None:
        return (
            f"Every row of both sets was used: the metrics ran in torch on {device}, where no set is sampled."
        )
    sampled = [
        f"the {side} {who.replace('_', ' ')} ({n:,} rows)"
        for side, counts in totals.items()
        for who, n in counts.items()
        if n > limit
    ]
    if not sampled:
        return (
            f"Every row of both sets was used (on the CPU a set larger than {limit:,} rows would be sampled "
            f"to {limit:,} rows with seed {seed})."
        )
    return (
        f"On the CPU a set larger than {limit:,} rows is sampled to {limit:,} rows without replacement "
        f"(numpy default_rng, seed {seed}): here {', '.join(sampled)}; the counts are of the rows used."
    )


def gap_metrics(
    reference: EmbeddingSet,
    other: EmbeddingSet,
    *,
    name: str,
    device: str = "auto",
    max_rows: int = MAX_ROWS,
    seed: int = SAMPLE_SEED,
) -> dict[str, Any]:
    """CMMD (sigma 10, x1000) and PRDC (k 5; reference = real, `other` = fake) on the image and text sides.

    `name` names the compared set in the counts (`n_selected`, `n_dataset`), which count the rows used.
    On the CPU each set keeps at most `max_rows` rows (`sample_rows` with `seed`); in torch (`device` as
    `gap.resolve_device` reads it: "auto" is CUDA where there is one) every row. `sampling` says which,
    with the sets' full sizes and one sentence for the report. PRDC needs more than k points in each set
    (a point's k-th neighbour is another point): with fewer, its four values are None.
    """
    device = resolve_device(device)
    limit = max_rows if device == "numpy" else None
    result: dict[str, Any] = {"sigma": SIGMA, "scale": SCALE, "k": K}
    totals: dict[str, dict[str, int]] = {}
    for side in SIDES:
        real, fake = getattr(reference, side), getattr(other, side)
        if len(fake) == 0:
            raise UserError(f"the {name.replace('_', ' ')} set is empty: there is nothing to compare")
        totals[side] = {"reference": len(real), name: len(fake)}
        if limit is not None:
            keep_real = sample_rows(len(real), limit=limit, seed=seed)
            keep_fake = sample_rows(len(fake), limit=limit, seed=seed)
            real = real if keep_real is None else real[keep_real]
            fake = fake if keep_fake is None else fake[keep_fake]
        row: dict[str, Any] = {
            "n_reference": len(real),
            f"n_{name}": len(fake),
            "cmmd": cmmd(real, fake, sigma=SIGMA, scale=SCALE, device=device),
        }
        defined = min(len(real), len(fake)) > K
        row.update(prdc(real, fake, k=K, device=device) if defined else dict.fromkeys(PRDC_KEYS))
        result[side] = row
    result["sampling"] = {
        "device": device,
        "max_rows": limit,
        "seed": seed,
        "rows": totals,
        "note": _sampling_note(totals, device=device, limit=limit, seed=seed),
    }
    return result


# ------------------------------------------------------------------------------------------- runs


def no_embeddings_note(run: str | Path, *, kept: bool) -> str:
    """Why a run has no gap section, and what to run: one sentence. `kept` is the run's score.embeddings."""
    rerun = f"`synthvlm score --run {run} --from score`, then `synthvlm select --run {run}`"
    why = (
        f"it was scored before they were kept; rerun scoring with {rerun}"
        if kept
        else f"its config has `score.embeddings: false`; set it to true and rerun scoring with {rerun}"
    )
    return f"This run has no stored CLIP embeddings, so it cannot be compared with a reference set: {why}."


def run_embeddings(run: str | Path) -> tuple[EmbeddingSet, EmbeddingSet] | None:
    """The stored embeddings of a run's selected set and of the rest, or None when the run has none.

    Selected: one image and one caption per selected row, in rank order. The rest: on the image side every
    scored candidate not selected, in score order; on the text side every caption none of whose candidates
    was selected (its first scored candidate's text embedding; a caption's candidates share its text).
    """
    run = fsio.run_path(run)
    score = layout.StageDir(run, "score")
    data_files, embedding_files = score.shards(), score.embedding_shards()
    if not data_files or [f.name for f in data_files] != [f.name for f in embedding_files]:
        return None
    scored = pa.concat_tables([fsio.read_table(f, columns=["key", "caption_id"]) for f in data_files])
    stored = pa.concat_tables([fsio.read_table(f) for f in embedding_files])
    keys = scored.column("key").to_pylist()
    if stored.column("key").to_pylist() != keys:
        return None  # embeddings of another scoring (shards written by an older run): not these candidates
    selection = pa.concat_tables(
        [fsio.read_table(f, columns=["key"]) for f in layout.StageDir(run, "select").shards()]
    )
    position = {key: i for i, key in enumerate(keys)}
    chosen = [position[key] for key in selection.column("key").to_pylist()]
    chosen_set = set(chosen)
    captions = scored.column("caption_id").to_pylist()
    chosen_captions = {captions[i] for i in chosen}
    rest_images = [i for i in range(len(keys)) if i not in chosen_set]
    rest_captions = [i for i in first_of_each(captions) if captions[i] not in chosen_captions]
    image = unit_rows(schema.embedding_matrix(stored.column("image_emb")))
    text = unit_rows(schema.embedding_matrix(stored.column("text_emb")))
    return (
        EmbeddingSet(image=image[chosen], text=text[chosen]),
        EmbeddingSet(image=image[rest_images], text=text[rest_captions]),
    )
