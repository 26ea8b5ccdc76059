"""The `llava` format: a list of {"id", "image", "conversations"} items; the first gpt turn is the caption."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from synthvlm.readers.base import MISSING, BadRecord, Record, judge, reject
from synthvlm.readers.jsondoc import json_list_items, list_text


def read_llava(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a LLaVA list's items as Records and BadRecords; a file that is not a list raises first."""
    text = list_text(path, 'a list of {"id", "image", "conversations"} objects')
    return _llava_records(path, text, max_caption_chars)


def _llava_records(path: str, text: str, limit: int) -> Iterator[Record | BadRecord]:
    for item in json_list_items(path, text):
        if type(item) is BadRecord:
            yield item
            continue
        index, obj = item
        if not isinstance(obj, dict):
            yield reject(path, index, "bad_record", f"item is a {type(obj).__name__}, not an object")
            continue
        turns = obj.get("conversations", MISSING)
        caption: Any = MISSING
        if turns is not MISSING:
            if not isinstance(turns, list) or not all(isinstance(turn, dict) for turn in turns):
                yield reject(path, index, "bad_record", "conversations is not a list of objects")
                continue
            for turn in turns:
                if turn.get("from") == "gpt":
                    caption = turn.get("value", MISSING)
                    break
        record = judge(path, index, caption, obj.get("id"), obj.get("image"), limit)
        if type(record) is BadRecord and record.reason == "missing_field" and caption is MISSING:
            record = reject(
                path, index, "missing_field", "item has no gpt turn with a value", None, record.source_id
            )
        yield record
