"""The `parquet` format: a table with a caption (or text) column, one entry per row; a null is missing.

Two columns with the name the reader picks (caption/text, id, image...) make the file unreadable. A string
cell that is not UTF-8 (pyarrow does not check on read) is `bad_utf8` for its row, as in every other format.

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
    shown_columns,
)


def read_parquet(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a Parquet file's rows as Records and BadRecords; damage found mid-file raises there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except FileNotFoundError as exc:
        raise UnreadableFileError(f"{path}: cannot open ({exc.strerror or 'no such file'})") from None
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:  # UnicodeDecodeError: a column name
        raise UnreadableFileError(
            f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})"
        ) from None
    names = parquet.schema_arrow.names
    caption_col = find_column(names, CAPTION_KEYS)
    if caption_col is None:
        shown = shown_columns(names)
        parquet.close()
        raise UnreadableFileError(f"{path}: no caption or text column (columns: {shown})")
    columns = [caption_col, "id" if "id" in names else None, find_column(names, IMAGE_KEYS)]
    for name in columns:
        if name is not None and names.count(name) > 1:
            # Which of them holds the captions (ids, images) is anybody's guess: say so, pick none.
            parquet.close()
            raise UnreadableFileError(f"{path}: {names.count(name)} columns are named {name!r}; expected one")
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
                    _values(batch.column(name)) if name else [None] * batch.num_rows for name in columns
                ]
                for caption, raw_id, image in zip(*values, strict=True):
                    index += 1
                    yield judge(path, index, caption, raw_id, image, limit)
        except (OSError, pa.ArrowException) as exc:
            message = " ".join(str(exc).split())
            raise UnreadableFileError(f"{path}: damaged after row {index} ({message})") from None


def _values(column: Any) -> list[Any]:
    """A column's values; string cells that are not UTF-8 come back with surrogateescapes (as the text formats
    decode them), so `judge` rejects only their rows, as `bad_utf8`."""
    import pyarrow as pa

    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        raw = column.cast(pa.large_binary()).to_pylist()  # a type that cannot be cast: damaged, as before
        return [None if value is None else value.decode("utf-8", "surrogateescape") for value in raw]
