"""The `parquet` format: a table with a caption (or text) column, one entry per row; a null is missing.

pyarrow is imported on first use, so importing the readers (and starting the CLI) stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from synthvlm.readers.base import (
    CAPTION_KEYS,
    IMAGE_KEYS,
    BadRecord,
    Record,
    UnreadableFileError,
    find_column,
    judge,
)


def read_parquet(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a Parquet file's rows as Records and BadRecords; damage found mid-file raises there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except FileNotFoundError as exc:
        raise UnreadableFileError(f"{path}: cannot open ({exc.strerror or 'no such file'})") from None
    except (OSError, pa.ArrowException) as exc:
        raise UnreadableFileError(
            f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})"
        ) from None
    names = parquet.schema_arrow.names
    caption_col = find_column(names, CAPTION_KEYS)
    if caption_col is None:
        shown = ", ".join(names)[:200]
        parquet.close()
        raise UnreadableFileError(f"{path}: no caption or text column (columns: {shown})")
    columns = [caption_col, "id" if "id" in names else None, find_column(names, IMAGE_KEYS)]
    return _parquet_records(parquet, columns, path, max_caption_chars)


def _parquet_records(
    parquet: Any, columns: list[str | None], path: str, limit: int
) -> Iterator[Record | BadRecord]:
    import pyarrow as pa

    wanted = [name for name in columns if name is not None]
    index = 0
    with parquet:
        try:
            for batch in parquet.iter_batches(batch_size=8192, columns=wanted):
                values = [
                    batch.column(name).to_pylist() if name else [None] * batch.num_rows for name in columns
                ]
                for caption, raw_id, image in zip(*values, strict=True):
                    index += 1
                    yield judge(path, index, caption, raw_id, image, limit)
        except (OSError, pa.ArrowException) as exc:
            message = " ".join(str(exc).split())
            raise UnreadableFileError(f"{path}: damaged after row {index} ({message})") from None
