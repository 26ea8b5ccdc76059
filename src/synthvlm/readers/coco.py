"""The `coco` format: a COCO captions object; each annotation is one entry, its image found by image_id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from synthvlm.readers.base import MISSING, BadRecord, Record, UnreadableFileError, judge, reject
from synthvlm.readers.jsondoc import not_json_error, read_json_text


def read_coco(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a COCO file's annotations as Records and BadRecords; a malformed images list raises first."""
    text = read_json_text(path)
    expected = 'a COCO captions object with "images" and "annotations" lists'
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, or an integer too long for int()
        raise not_json_error(path, text, expected) from None
    if not isinstance(doc, dict):
        raise UnreadableFileError(f"{path}: the JSON document is a {type(doc).__name__}; expected {expected}")
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise UnreadableFileError(f'{path}: no "{key}" list; expected {expected}')
    files: dict[Any, Any] = {}
    for number, image in enumerate(doc["images"], 1):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise UnreadableFileError(f'{path}: images entry {number} has no "id" and "file_name"')
        if not isinstance(image["id"], int | str) or isinstance(image["id"], bool):
            kind = type(image["id"]).__name__
            raise UnreadableFileError(
                f"{path}: images entry {number} has an id of type {kind}; expected an integer or string"
            )
        files[image["id"]] = image["file_name"]
    return _coco_records(path, doc["annotations"], files, max_caption_chars)


def _coco_records(
    path: str, annotations: list[Any], files: dict[Any, Any], limit: int
) -> Iterator[Record | BadRecord]:
    for index, ann in enumerate(annotations, 1):
        if not isinstance(ann, dict):
            yield reject(path, index, "bad_record", f"annotation is a {type(ann).__name__}, not an object")
            continue
        image_id = ann.get("image_id")
        # An image_id the images list does not know leaves the caption usable, just without an image_ref.
        image = files.get(image_id) if isinstance(image_id, int | str) else None
        yield judge(path, index, ann.get("caption", MISSING), ann.get("id"), image, limit)
