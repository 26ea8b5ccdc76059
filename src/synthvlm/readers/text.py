"""The `txt` format: one caption per line, with no id or image reference."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from synthvlm.readers.base import BadRecord, Record, decoded_lines, judge_caption, open_binary


def read_txt(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a text file's lines as Records and BadRecords (an empty line is `empty_caption`)."""
    return _txt_records(open_binary(path), path, max_caption_chars)


def _txt_records(f: BinaryIO, path: str, limit: int) -> Iterator[Record | BadRecord]:
    for index, line in decoded_lines(f, path):
        yield line if type(line) is BadRecord else judge_caption(path, index, line, None, None, limit)
