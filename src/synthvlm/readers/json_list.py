"""The `json` format: a JSON list of `{"caption" | "text", "id", "image" | ...}` objects."""

from __future__ import annotations

from collections.abc import Iterator

from synthvlm.readers.base import BadRecord, Record, judge_object
from synthvlm.readers.jsondoc import json_list_items, list_text


def read_json(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a JSON list's elements as Records and BadRecords; a file that is not a list raises first."""
    text = list_text(path, 'a list of {"caption": ...} objects')
    return _json_records(path, text, max_caption_chars)


def _json_records(path: str, text: str, limit: int) -> Iterator[Record | BadRecord]:
    for item in json_list_items(path, text):
        if type(item) is BadRecord:
            yield item
        else:
            yield judge_object(path, item[0], item[1], limit)
