"""Caption statistics for the report: each configured rule filter's statistic over the ingested captions.

What Data-Juicer's analyzer shows before a recipe is run: the distribution of every filter's statistic
with its thresholds, so thresholds can be chosen on the data before any image is generated. The values
come from the filters' own `compute`, so they are exactly what `curate` compares with the thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthvlm.config import CurateConfig
from synthvlm.core import fsio, layout
from synthvlm.core.errors import UserError
from synthvlm.steps.filters import build_filter
from synthvlm.steps.rules import filter_specs

SAMPLE = 20_000
"""Captions the statistics are computed on at most: the paper's five filters take a second or two on
this many."""


def sample_positions(total: int, size: int) -> np.ndarray:
    """Evenly spaced row positions, `size` of `total` (all rows when there are no more than `size`)."""
    if total <= size:
        return np.arange(total, dtype=np.int64)
    return np.arange(size, dtype=np.int64) * total // size


def sample_captions(run: fsio.RunPath, *, size: int) -> tuple[list[str], int]:
    """A deterministic sample of ingest's captions (evenly spaced in shard order) and how many there are.

    Shards are read one at a time, caption column only, so memory follows the sample, not the pool.
    """
    shards = layout.StageDir(run, "ingest").shards()
    rows = [fsio.parquet_rows(shard) for shard in shards]
    total = sum(rows)
    wanted = sample_positions(total, size)
    captions: list[str] = []
    start = 0
    for shard, n in zip(shards, rows, strict=True):
        local = wanted[(wanted >= start) & (wanted < start + n)] - start
        if local.size:
            column = fsio.read_table(shard, columns=["caption"]).column("caption")
            captions.extend(column.take(local).to_pylist())
        start += n
    return captions, total


def _statistic(cls: type) -> str:
    """What the filter measures: the first clause of its class docstring, without RST markup."""
    return (cls.__doc__ or cls.__name__).split(";")[0].strip().rstrip(".").replace("``", "")


def caption_statistics(run: fsio.RunPath, curate: CurateConfig, *, size: int = SAMPLE) -> dict[str, Any]:
    """Each configured rule filter's statistic over a sample of the ingested captions, with its thresholds
    and what each threshold alone would drop of the sample; `_values` holds the arrays to plot."""
    try:
        filters = [build_filter(spec["name"], spec["params"]) for spec in filter_specs(curate)]
    except ValueError as exc:
        raise UserError(f"curate: {exc}") from None
    captions, total = sample_captions(run, size=size)
    keep_all = np.ones(len(captions), dtype=bool)
    rows = []
    for f in filters:
        values = f.compute(captions)
        low_name, high_name = f._bound_names()
        low, high = float(getattr(f, low_name)), float(getattr(f, high_name))
        kept = f.keep(values)
        keep_all &= kept
        rows.append(
            {
                "name": f.name,
                "statistic": _statistic(type(f)),
                "low_name": low_name,
                "low": low,
                "high_name": high_name,
                "high": high,
                "below": int(np.sum(values < low)),
                "above": int(np.sum(values > high)),
                "kept": int(np.sum(kept)),
                "min": float(values.min()) if len(values) else None,
                "max": float(values.max()) if len(values) else None,
                "_values": values,
            }
        )
    return {
        "total": total,
        "sampled": len(captions),
        "recipe": curate.recipe if curate.filters is None else None,
        "kept_by_all": int(np.sum(keep_all)),
        "filters": rows,
    }
