"""The `jsonl` format: one `{"caption" | "text", "id", "image" | ...}` object per line.

An empty line is `bad_json`; JSON nested deeper than the parser's recursion limit, or with an integer longer
than Python converts, costs only its line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

from synthvlm.readers.base import BadRecord, Record, decoded_lines, judge_object, open_binary, reject
from synthvlm.readers.jsondoc import parse_failure


def read_jsonl(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a JSONL file's lines as Records and BadRecords."""
    return _jsonl_records(open_binary(path), path, max_caption_chars)


def _jsonl_records(f: BinaryIO, path: str, limit: int) -> Iterator[Record | BadRecord]:
    loads = json.loads
    for index, line in decoded_lines(f, path):
        if type(line) is BadRecord:
            yield line
            continue
        try:
            obj = loads(line)
        except json.JSONDecodeError as exc:
            detail = "empty line" if not line.strip() else f"invalid JSON ({exc.msg}, column {exc.colno})"
            yield reject(path, index, "bad_json", detail, line)
            continue
        except (RecursionError, ValueError) as exc:  # after JSONDecodeError, itself a ValueError
            yield reject(path, index, "bad_json", parse_failure(exc), line)
            continue
        yield judge_object(path, index, obj, limit)
