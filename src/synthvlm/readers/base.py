"""What every reader shares: the record types, and the one place a caption, id or image reference is judged.

Readers only find the entries of their format; whether an entry becomes a Record or a BadRecord, and with
which reason and detail, is decided here, so every format rejects the same things with the same words.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

REASONS: dict[str, str] = {
    "bad_json": "a JSONL line (or a JSON list element) is not valid JSON",
    "bad_utf8": "the line, caption, id or image reference has bytes that are not valid UTF-8",
    "bad_csv": "a CSV/TSV row cannot be parsed or has a different number of fields than the header",
    "missing_field": "the record has no caption field (or it is null)",
    "not_a_string": "the caption is a number, list, object or other non-string value",
    "empty_caption": "the caption is empty or whitespace only",
    "too_long": "the caption is longer than max_caption_chars after whitespace collapsing",
    "control_chars": "the caption contains a control character other than tab, LF or CR",
    "image_token": "the caption contains text a trainer turns into image tokens, such as <image>",
    "truncated_file": "a JSON list ends before its closing bracket",
    "bad_record": "the record is not an object, or its id / image reference has an unusable type or shape",
}
"""The fixed set of BadRecord reasons, with what each means (for the rejected table's documentation)."""

IMAGE_KEYS = ("image", "image_path", "file_name", "url")
"""Keys (or columns) that may hold an entry's image reference, in order of preference."""
CAPTION_KEYS = ("caption", "text")
"""Keys (or columns) that may hold an entry's caption, in order of preference: `caption` wins."""
MISSING = object()
"""Stands for "no caption field at all", which a null caption is not (their details differ)."""

TRAINER_TOKENS = ("<image>", "<im_patch>", "<im_start>", "<im_end>", "<image-placeholder>")
"""Text LLaVA's data pipeline replaces with image tokens (its DEFAULT_IMAGE_TOKEN and the patch, start,
end and placeholder tokens): a caption holding one gives a sample more image tokens than images."""

_RAW_LIMIT = 1000
# Anything a caption must not contain: C0 controls except \t \n \r, DEL, C1 controls, and lone surrogates
# (what undecodable bytes become under surrogateescape, or what a JSON "\ud800" escape produces).
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Record:
    """A usable caption found in a source file, with where it came from (for provenance and rejects)."""

    caption: str
    source_file: str
    source_index: int
    source_id: str | None
    image_ref: str | None


@dataclass(frozen=True, slots=True)
class BadRecord:
    """An entry that cannot become a caption; it goes to the rejected table so nothing is lost silently."""

    source_file: str
    source_index: int
    reason: str
    detail: str
    caption: str | None = None
    source_id: str | None = None


class UnreadableFileError(ValueError):
    """A whole file cannot be read as its format; the message is one line naming the file and the problem."""


def reject(
    path: str, index: int, reason: str, detail: str, caption: str | None = None, source_id: str | None = None
) -> BadRecord:
    """A BadRecord whose raw text the rejected table can store (cut to a bounded length, encodable)."""
    # Raw text is kept for the rejected table, so it must be encodable: lone surrogates become U+FFFD.
    if caption is not None:
        caption = _SURROGATE.sub("\ufffd", caption[:_RAW_LIMIT])
    if source_id is not None:
        source_id = _SURROGATE.sub("\ufffd", source_id)
    return BadRecord(path, index, reason, detail, caption, source_id)


def short_repr(value: Any) -> str:
    """A value's repr cut to 60 characters, so a detail message stays one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def judge_caption(
    path: str, index: int, caption: str, source_id: str | None, image_ref: str | None, limit: int
) -> Record | BadRecord:
    """Reject a string caption with bad characters, or empty or too long once its whitespace is collapsed."""
    # isprintable() is a fast pre-check: printable text has no controls and no surrogates.
    bad = None if caption.isprintable() else _BAD_CHARS.search(caption)
    if bad is not None:
        char = bad.group()
        if "\ud800" <= char <= "\udfff":
            detail = f"caption has bytes that are not valid UTF-8 (at character {bad.start()})"
            return reject(path, index, "bad_utf8", detail, caption, source_id)
        detail = f"caption contains control character U+{ord(char):04X} at character {bad.start()}"
        return reject(path, index, "control_chars", detail, caption, source_id)
    text = " ".join(caption.split())
    if not text:
        return reject(path, index, "empty_caption", "caption is empty or only whitespace", caption, source_id)
    if len(text) > limit:
        detail = f"caption has {len(text)} characters after whitespace collapsing; the limit is {limit}"
        return reject(path, index, "too_long", detail, text, source_id)
    if "<" in text and (token := trainer_token(text)) is not None:
        detail = f"caption contains {token}, which LLaVA's trainer turns into image tokens"
        return reject(path, index, "image_token", detail, text, source_id)
    return Record(text, path, index, source_id, image_ref)


def trainer_token(text: str) -> str | None:
    """The first of TRAINER_TOKENS in a caption, or None."""
    return next((token for token in TRAINER_TOKENS if token in text), None)


def judge(path: str, index: int, caption: Any, raw_id: Any, raw_image: Any, limit: int) -> Record | BadRecord:
    """Check the id, image reference and caption of one structured record (`MISSING` = no caption field)."""
    text = caption if isinstance(caption, str) else None  # kept with a rejected id or image reference
    if raw_id is None or raw_id == "":
        source_id = None
    elif isinstance(raw_id, str):
        if not raw_id.isascii() and _SURROGATE.search(raw_id):
            return reject(path, index, "bad_utf8", "id has bytes that are not valid UTF-8", text, raw_id)
        source_id = raw_id
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        source_id = str(raw_id)
    else:
        detail = f"id is a {type(raw_id).__name__} ({short_repr(raw_id)}), not a string or integer"
        return reject(path, index, "bad_record", detail, text)
    if raw_image is None or raw_image == "":
        image_ref = None
    elif isinstance(raw_image, str):
        if not raw_image.isascii() and _SURROGATE.search(raw_image):
            return reject(
                path, index, "bad_utf8", "image reference has bytes that are not valid UTF-8", text, source_id
            )
        image_ref = raw_image
    else:
        detail = f"image reference is a {type(raw_image).__name__} ({short_repr(raw_image)}), not a string"
        return reject(path, index, "bad_record", detail, text, source_id)
    if caption is MISSING:
        return reject(path, index, "missing_field", "record has no caption or text field", None, source_id)
    if caption is None:
        return reject(path, index, "missing_field", "caption is null", None, source_id)
    if not isinstance(caption, str):
        detail = f"caption is a {type(caption).__name__} ({short_repr(caption)}), not a string"
        return reject(path, index, "not_a_string", detail, None, source_id)
    return judge_caption(path, index, caption, source_id, image_ref, limit)


def judge_object(path: str, index: int, obj: Any, limit: int) -> Record | BadRecord:
    """Judge one JSON value that should be a `{"caption" | "text", "id", "image" | ...}` object."""
    if not isinstance(obj, dict):
        return reject(
            path, index, "bad_record", f"record is a {type(obj).__name__} ({short_repr(obj)}), not an object"
        )
    caption = obj.get("caption", MISSING)
    if caption is MISSING:
        caption = obj.get("text", MISSING)
    image = None
    for key in IMAGE_KEYS:
        image = obj.get(key)
        if image is not None:
            break
    return judge(path, index, caption, obj.get("id"), image, limit)


def find_column(names: Sequence[str], keys: Sequence[str]) -> str | None:
    """The first of `keys` that is among a table's column names (CAPTION_KEYS or IMAGE_KEYS order)."""
    return next((key for key in keys if key in names), None)


def shown_columns(names: Sequence[str]) -> str:
    """A table's column names for a one-line error: a name with line breaks, controls or undecodable bytes
    is shown as a Python literal, so the message stays one printable, encodable line."""
    return ", ".join(name if name.isprintable() else repr(name) for name in names)[:200]


def open_binary(path: str) -> BinaryIO:
    """Open a file for reading bytes; a missing or unreadable file is an UnreadableFileError."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot open ({exc.strerror})") from None


def decoded_lines(f: BinaryIO, path: str) -> Iterator[tuple[int, str | BadRecord]]:
    """(line number, text) per line, decoded line by line so one bad byte costs one line, not the file."""
    with f:
        index = 0
        for raw in f:
            index += 1
            if index == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            raw = raw.rstrip(b"\r\n")
            try:
                line: str | BadRecord = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                detail = f"line is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
                line = reject(path, index, "bad_utf8", detail, raw.decode("utf-8", "replace"))
            yield index, line
