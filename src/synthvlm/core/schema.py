"""Arrow schemas of every table synthvlm writes: one per stage, their intermediate tables, the shared
rejected-row table, the Parquet export and `score-dataset`'s table."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

CAPTIONED = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("image", pa.string(), nullable=False),
    ]
)
"""Caption stage output: the columns ingest's Parquet reader takes as id, caption and image reference."""

CAPTION = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_index", pa.int64(), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("image_ref", pa.string()),
    ]
)
"""A caption in the pool (ingest and curate output). `source_index` is the 1-based line or record number."""

FILTERED = CAPTION.append(pa.field("text_hash", pa.uint64(), nullable=False))
"""Curate's rule-filter output when exact dedup follows: the caption plus its normalised-text hash."""

DEDUP_PLAN = pa.schema([pa.field("keep", pa.bool_(), nullable=False), pa.field("dup_of", pa.string())])
"""Curate's exact-dedup plan, one row per caption of a shard: kept, or the id it duplicates."""

NEARDUP_PLAN = DEDUP_PLAN.append(pa.field("dup_of_caption", pa.string()))
"""Curate's near-dedup plan: the dedup plan plus the caption of the cluster's representative."""

REJECTED = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("detail", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("source_index", pa.int64()),
    ]
)
"""A row some stage dropped, with the reason (a filter name, `bad_json`, `failed_image`, ...)."""

CANDIDATE = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("caption_id", pa.string(), nullable=False),
        pa.field("candidate_index", pa.int32(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("image_shard", pa.string()),
        pa.field("image_name", pa.string()),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("model_revision", pa.string(), nullable=False),
        pa.field("refiner_id", pa.string()),
        pa.field("refiner_revision", pa.string()),
        pa.field("scheduler", pa.string(), nullable=False),
        pa.field("steps", pa.int32(), nullable=False),
        pa.field("guidance", pa.float64(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("dtype", pa.string(), nullable=False),
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("prompt_tokens", pa.int32(), nullable=False),
    ]
)
"""One generated image (or a failed attempt at one). Deterministic: timings live in `TIMING`."""

GENERATOR = pa.field("generator", pa.string(), nullable=False)
"""The pool entry (`generate.generators[].name`) that made a candidate; only in mixed pools' tables."""


def candidate_schema(mixed: bool) -> pa.Schema:
    """CANDIDATE, plus `generator` when candidates come from several generators (a run with one generator
    writes exactly CANDIDATE)."""
    return CANDIDATE.append(GENERATOR) if mixed else CANDIDATE


def generator_column(table: pa.Table, single: str) -> pa.Array:
    """Which generator made each row of a table generate wrote (or keyed by its keys, with the column
    carried): its `generator` column in a mixed pool; `single`, the one generator's name, otherwise."""
    if GENERATOR.name in table.column_names:
        return table.column(GENERATOR.name).combine_chunks()
    return pa.array([single] * table.num_rows, pa.string())


PROVENANCE = (
    "model_id",
    "model_revision",
    "refiner_id",
    "refiner_revision",
    "scheduler",
    "steps",
    "guidance",
    "width",
    "height",
    "dtype",
)
"""The CANDIDATE columns that say how an image was made (the report and the dataset card group by them)."""

TIMING = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
    ]
)
"""Model-seconds spent per image; kept apart so that data shards stay byte-identical across runs."""

SCORE = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("caption_id", pa.string(), nullable=False),
        pa.field("candidate_index", pa.int32(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("image_shard", pa.string(), nullable=False),
        pa.field("image_name", pa.string(), nullable=False),
        pa.field("clip", pa.float64(), nullable=False),
        pa.field("ssim", pa.float64(), nullable=False),
        pa.field("weighted", pa.float64(), nullable=False),
    ]
)
"""Scores of one good candidate: clip = max(cosine, 0), weighted = clip + lambda * ssim."""

SCORE_IDENTITY = ("key", "caption_id", "candidate_index", "caption", "image_shard", "image_name")
"""The SCORE columns that say which candidate a row is; the others are its scores."""

SCORER_COLUMNS: dict[str, tuple[pa.Field, ...]] = {
    "siglip": (pa.field("siglip", pa.float64(), nullable=False),),
    "pickscore": (pa.field("pickscore", pa.float64(), nullable=False),),
    "vqascore": (pa.field("vqascore", pa.float64(), nullable=False),),
    "nsfw": (
        pa.field("nsfw", pa.bool_(), nullable=False),
        pa.field("nsfw_margin", pa.float64(), nullable=False),
    ),
    "aesthetic": (pa.field("aesthetic", pa.float64(), nullable=False),),
}
"""The columns each opt-in pair scorer adds after `weighted`, in `ScorersConfig` order (docs/metrics.md)."""

BASE_SCORE_COLUMNS = ("clip", "ssim", "weighted")
"""The score columns every run has."""


def score_schema(scorers: list[str]) -> pa.Schema:
    """SCORE plus the columns of the enabled scorers (none: exactly SCORE, as runs before scorers existed)."""
    return pa.schema([*SCORE, *(f for name in scorers for f in SCORER_COLUMNS[name])])


def score_columns(scorers: list[str]) -> list[str]:
    """Every numeric score column of a run with these scorers: what `select.key` may name."""
    extra = [f.name for name in scorers for f in SCORER_COLUMNS[name] if not pa.types.is_boolean(f.type)]
    return [*BASE_SCORE_COLUMNS, *extra]


def selection_schema(scorers: list[str]) -> pa.Schema:
    """A selected candidate with its 1-based rank and the selection's cut-off value of the ranking key."""
    return pa.schema(
        [
            *score_schema(scorers),
            pa.field("rank", pa.int64(), nullable=False),
            pa.field("cutoff", pa.float64(), nullable=False),
        ]
    )


SELECTION = selection_schema([])
"""The selection table of a run without opt-in scorers."""

EMBEDDING_DTYPE = pa.float16()
"""Stored embeddings are float16: half the bytes, and cosines within 1e-3 of float32's."""


EMBEDDINGS = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("image_emb", pa.list_(EMBEDDING_DTYPE), nullable=False),
        pa.field("text_emb", pa.list_(EMBEDDING_DTYPE), nullable=False),
    ]
)
"""Score's side table: each scored candidate's L2-normalised CLIP image and text embeddings, by key, in the
order of the score shard (the vectors' length is the CLIP model's projection size)."""


EXPORT_PROVENANCE = ("generator", "model_id", "model_revision", "seed")
"""How each exported image was made: the pool's generator (its preset's name for a single generator), the
model and its revision, and the image's seed (`derive_seed` of its caption, candidate and attempt)."""


def _value(field: pa.Field) -> dict[str, str]:
    dtype = {pa.bool_(): "bool", pa.string(): "string"}.get(field.type, str(field.type))
    return {"dtype": {"double": "float64"}.get(dtype, dtype), "_type": "Value"}


def export_parquet_features(scorers: list[str]) -> dict[str, dict[str, str]]:
    """The Parquet export's columns as `datasets` features: key, caption, image, the candidate, every score
    column of the run (the opt-in scorers' included), the rank, then the image's provenance."""
    return {
        "key": {"dtype": "string", "_type": "Value"},
        "caption": {"dtype": "string", "_type": "Value"},
        "image": {"_type": "Image"},
        "caption_id": {"dtype": "string", "_type": "Value"},
        "candidate_index": {"dtype": "int32", "_type": "Value"},
        **{f.name: _value(f) for f in score_schema(scorers) if f.name not in SCORE_IDENTITY},
        "rank": {"dtype": "int64", "_type": "Value"},
        "generator": {"dtype": "string", "_type": "Value"},
        "model_id": {"dtype": "string", "_type": "Value"},
        "model_revision": {"dtype": "string", "_type": "Value"},
        "seed": {"dtype": "int64", "_type": "Value"},
    }


_ARROW = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
}


def export_parquet_schema(scorers: list[str]) -> pa.Schema:
    """The Parquet export: image bytes in `datasets`' Image struct, caption, scores and provenance; the
    `huggingface` metadata makes `datasets` decode the image column as an Image feature."""
    features = export_parquet_features(scorers)
    image = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
    fields = [
        pa.field(name, image if f["_type"] == "Image" else _ARROW[f["dtype"]]) for name, f in features.items()
    ]
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})


SCORED_PAIR = pa.schema(
    [
        pa.field("index", pa.int64(), nullable=False),
        pa.field("id", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("image", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("clip", pa.float64()),
        pa.field("ssim", pa.float64()),
        pa.field("weighted", pa.float64()),
    ]
)
"""One pair `score-dataset` read: `status` is "ok" (scores set) or the reason it could not be scored."""


def scored_pair_schema(scorers: list[str]) -> pa.Schema:
    """SCORED_PAIR plus the enabled scorers' columns (null where the pair could not be scored)."""
    return pa.schema([*SCORED_PAIR, *(f.with_nullable(True) for n in scorers for f in SCORER_COLUMNS[n])])


def embeddings_table(keys: list[str], image_emb: Any, text_emb: Any) -> pa.Table:
    """Rows of the EMBEDDINGS table from (n, d) arrays: float16 vectors by key."""
    import numpy as np

    def vectors(emb: Any) -> pa.Array:
        emb = np.asarray(emb)
        flat = pa.array(emb.astype(np.float16).ravel(), type=EMBEDDING_DTYPE)
        offsets = np.arange(0, len(flat) + 1, max(emb.shape[1], 1), dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), flat)

    return pa.table(
        [pa.array(list(keys), pa.string()), vectors(image_emb), vectors(text_emb)], schema=EMBEDDINGS
    )


def embedding_matrix(column: pa.ChunkedArray | pa.Array) -> Any:
    """An EMBEDDINGS vector column as an (n, d) float16 array, exactly as stored."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(n, len(flat) // n if n else 0)
