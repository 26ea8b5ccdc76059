"""The `csv` and `tsv` formats: a header row naming a caption (or text) column, then one entry per row.

TSV uses the csv module's `excel-tab` dialect (double quotes quote fields, as pandas writes them). A row
that cannot be parsed, whose quote never closes, or that spans several lines and has the wrong number of
fields (a stray quote joined them) costs only its first line: that line is `bad_csv` and reading resumes
on the next line, so one stray quote never swallows the rest of the file. A blank row is `empty_caption`.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterator
from typing import TextIO

from synthvlm.readers.base import (
    CAPTION_KEYS,
    IMAGE_KEYS,
    BadRecord,
    Record,
    UnreadableFileError,
    find_column,
    judge,
    reject,
    shown_columns,
)


def read_csv(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a comma-separated file's rows as Records and BadRecords."""
    return _read_delimited(path, max_caption_chars=max_caption_chars, dialect="excel")


def read_tsv(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a tab-separated file's rows as Records and BadRecords."""
    return _read_delimited(path, max_caption_chars=max_caption_chars, dialect="excel-tab")


def _open_text(path: str) -> TextIO:
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot open ({exc.strerror})") from None


class _Lines:
    """The physical lines a csv.reader consumes, kept for the row being parsed, so a row that cannot be
    parsed costs one line: its first line is rejected and the parser restarts on the next."""

    def __init__(self, source: TextIO) -> None:
        self.source = source
        self.replay: deque[str] = deque()
        self.taken: list[str] = []
        self.at_end = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.replay:
            line = self.replay.popleft()
        else:
            line = next(self.source, None)
            if line is None:
                self.at_end = True
                raise StopIteration
        self.taken.append(line)
        return line

    def start_row(self) -> None:
        self.taken = []

    def reject_row(self) -> str:
        """Give up on the row being parsed: return its first line and re-read the lines after it."""
        first, *rest = self.taken
        self.replay.extendleft(reversed(rest))
        self.taken = []
        return first.rstrip("\r\n")


def _unclosed_quote(lines: list[str], dialect: str) -> bool:
    """True when these lines end inside a quoted field (the lenient reader would take them as one row)."""
    try:
        for _ in csv.reader(lines, dialect, strict=True):
            pass
    except csv.Error as exc:
        return "end of data" in str(exc)  # the strict reader's words for input ending inside quotes
    return False


def _read_delimited(path: str, *, max_caption_chars: int, dialect: str) -> Iterator[Record | BadRecord]:
    f = _open_text(path)
    lines = _Lines(f)
    try:
        header = next(csv.reader(lines, dialect))
    except StopIteration:
        f.close()
        raise UnreadableFileError(
            f"{path}: file is empty; expected a header row with a caption column"
        ) from None
    except csv.Error as exc:
        f.close()
        raise UnreadableFileError(f"{path}: the header row cannot be parsed ({exc})") from None
    caption_col = find_column(header, CAPTION_KEYS)
    if caption_col is None:
        f.close()
        shown = shown_columns(header)
        raise UnreadableFileError(f"{path}: no caption or text column in the header (columns: {shown})")
    return _delimited_records(f, lines, dialect, header, caption_col, path, max_caption_chars)


def _delimited_records(
    f: TextIO, lines: _Lines, dialect: str, header: list[str], caption_col: str, path: str, limit: int
) -> Iterator[Record | BadRecord]:
    width = len(header)
    caption_at = header.index(caption_col)
    id_at = header.index("id") if "id" in header else None
    image_col = find_column(header, IMAGE_KEYS)
    image_at = header.index(image_col) if image_col is not None else None
    reader = csv.reader(lines, dialect)
    with f:
        index = 0
        while True:
            index += 1
            lines.start_row()
            try:
                row = next(reader)
                if lines.at_end and len(lines.taken) > 1 and _unclosed_quote(lines.taken, dialect):
                    raise csv.Error("a quoted field is never closed")
            except StopIteration:
                return
            except csv.Error as exc:
                line = lines.reject_row()
                yield reject(path, index, "bad_csv", f"row cannot be parsed ({exc}); skipped its line", line)
                reader = csv.reader(lines, dialect)  # a fresh parser state from the next line
                continue
            if not row:
                yield reject(path, index, "empty_caption", "blank row", "")
                continue
            if len(row) != width:
                if len(lines.taken) > 1:  # a stray quote joined lines: reject the first, re-read the rest
                    detail = (
                        f"row has {len(row)} fields across {len(lines.taken)} lines, the header has {width}; "
                        "skipped its first line"
                    )
                    line = lines.reject_row()
                    reader = csv.reader(lines, dialect)
                    yield reject(path, index, "bad_csv", detail, line)
                    continue
                detail = f"row has {len(row)} fields, the header has {width}"
                yield reject(path, index, "bad_csv", detail, "\t".join(row))
                continue
            raw_id = row[id_at] if id_at is not None else None
            image = row[image_at] if image_at is not None else None
            yield judge(path, index, row[caption_at], raw_id, image, limit)
