"""Reading row ranges that span several Parquet shards, using only their footers to locate rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from synthvlm.core import fsio


def row_counts(files: Sequence[fsio.RunPath]) -> list[int]:
    """Rows per shard, read from Parquet metadata (no data pages)."""
    return [fsio.parquet_rows(f) for f in files]


def read_range(
    files: Sequence[fsio.RunPath],
    counts: Sequence[int],
    start: int,
    end: int,
    *,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows [start, end) of the concatenation of `files`, in order."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    pieces = []
    for i, path in enumerate(files):
        lo, hi = max(start, offsets[i]), min(end, offsets[i + 1])
        if lo < hi:
            pieces.append(fsio.read_table(path, columns=columns).slice(lo - offsets[i], hi - lo))
    if not pieces:
        raise ValueError(f"rows [{start}, {end}) are outside the {offsets[-1]} rows of the input shards")
    return pa.concat_tables(pieces)
