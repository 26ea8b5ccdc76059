"""Caption-file readers: every entry of a source file becomes a Record or a BadRecord, never nothing.

Each reader streams its file and yields, in file order, one `Record` per usable caption and one
`BadRecord` per entry that cannot become a caption, so the ingest stage can prove counts in == counts out.
For line formats (jsonl, txt, flickr8k) `#Records + #BadRecords` equals the number of lines (a final line
terminator does not start another line); for csv/tsv it equals the number of data rows; for parquet the
number of rows; for JSON lists, COCO and LLaVA the number of elements, plus one BadRecord when a JSON list
stops early (`truncated_file` or `bad_json`).

Decisions worth knowing:
- A caption is stripped and every run of whitespace (Python's `str.split()`: ASCII and Unicode spaces,
  tabs, line breaks) becomes one space. Before that, C0 controls other than tab/LF/CR, DEL and C1 controls
  reject the record as `control_chars`; a caption with bytes that are not UTF-8 is `bad_utf8` (the first
  offending character decides which).
- A JSON `null` (or Parquet null) caption counts as a missing field; numbers and other non-strings are
  `not_a_string`, never coerced. When both `caption` and `text` keys exist, `caption` wins.
- Ids may be strings or integers (integers become their decimal text); an empty id or image reference
  means none. Any other id/image type is `bad_record`.
- An empty line is `empty_caption` in txt, `bad_json` in jsonl and `bad_record` in flickr8k; a blank csv row
  is `empty_caption`.
- Flickr8k lines are `<name>#<n>` then a tab (a single space is accepted too: the published
  Flickr8k.token.txt has a few such lines) then the caption; `<name>#<n>` without a caption is
  `missing_field`, anything else that does not look like that is `bad_record`.
- TSV uses the csv module's `excel-tab` dialect (double quotes quote fields, as pandas writes them).
- A csv/tsv row that cannot be parsed, whose quote never closes, or that spans several lines and has the
  wrong number of fields (a stray quote joined them) costs only its first line: that line is `bad_csv` and
  reading resumes on the next line, so one stray quote never swallows the rest of the file.
- JSON nested deeper than the parser's recursion limit is `bad_json` (jsonl: that line; a JSON list: that
  element, and the rest of the file is not read).
- A UTF-8 byte-order mark is dropped; CRLF line endings are ordinary line endings.
"""

from __future__ import annotations

import codecs
import csv
import glob
import json
import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TextIO

REASONS: dict[str, str] = {
    "bad_json": "a JSONL line (or a JSON list element) is not valid JSON",
    "bad_utf8": "the line, caption, id or image reference has bytes that are not valid UTF-8",
    "bad_csv": "a CSV/TSV row cannot be parsed or has a different number of fields than the header",
    "missing_field": "the record has no caption field (or it is null)",
    "not_a_string": "the caption is a number, list, object or other non-string value",
    "empty_caption": "the caption is empty or whitespace only",
    "too_long": "the caption is longer than max_caption_chars after whitespace collapsing",
    "control_chars": "the caption contains a control character other than tab, LF or CR",
    "truncated_file": "a JSON list ends before its closing bracket",
    "bad_record": "the record is not an object, or its id / image reference has an unusable type or shape",
}
"""The fixed set of BadRecord reasons, with what each means (for the rejected table's documentation)."""

_RAW_LIMIT = 1000
_IMAGE_KEYS = ("image", "image_path", "file_name", "url")
_CAPTION_KEYS = ("caption", "text")
# Anything a caption must not contain: C0 controls except \t \n \r, DEL, C1 controls, and lone surrogates
# (what undecodable bytes become under surrogateescape, or what a JSON "\ud800" escape produces).
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_JSON_WS = re.compile(r"[ \t\n\r]*")
_FLICKR_LINE = re.compile(r"(\S+)#(\d+)(?:[\t ](.*))?", re.DOTALL)
_FLICKR_DETECT = re.compile(r"[^\s#]+\.(?:jpe?g|png|gif|bmp|webp|tiff?)[^\s#]*#\d+(?:[\t ]|$)", re.IGNORECASE)
_PEEK_BYTES = 65536
_GLOB_MAGIC = re.compile(r"[*?[]")
_MISSING = object()
_TOO_DEEP = "JSON nested deeper than the parser's recursion limit"


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


def _bad(
    path: str, index: int, reason: str, detail: str, caption: str | None = None, source_id: str | None = None
) -> BadRecord:
    # Raw text is kept for the rejected table, so it must be encodable: lone surrogates become U+FFFD.
    if caption is not None:
        caption = _SURROGATE.sub("\ufffd", caption[:_RAW_LIMIT])
    if source_id is not None:
        source_id = _SURROGATE.sub("\ufffd", source_id)
    return BadRecord(path, index, reason, detail, caption, source_id)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _judge_caption(
    path: str, index: int, caption: str, source_id: str | None, image_ref: str | None, limit: int
) -> Record | BadRecord:
    # isprintable() is a fast pre-check: printable text has no controls and no surrogates.
    bad = None if caption.isprintable() else _BAD_CHARS.search(caption)
    if bad is not None:
        char = bad.group()
        if "\ud800" <= char <= "\udfff":
            detail = f"caption has bytes that are not valid UTF-8 (at character {bad.start()})"
            return _bad(path, index, "bad_utf8", detail, caption, source_id)
        detail = f"caption contains control character U+{ord(char):04X} at character {bad.start()}"
        return _bad(path, index, "control_chars", detail, caption, source_id)
    text = " ".join(caption.split())
    if not text:
        return _bad(path, index, "empty_caption", "caption is empty or only whitespace", caption, source_id)
    if len(text) > limit:
        detail = f"caption has {len(text)} characters after whitespace collapsing; the limit is {limit}"
        return _bad(path, index, "too_long", detail, text, source_id)
    return Record(text, path, index, source_id, image_ref)


def _judge(
    path: str, index: int, caption: Any, raw_id: Any, raw_image: Any, limit: int
) -> Record | BadRecord:
    """Check the id, image reference and caption of one structured record (`_MISSING` = no caption field)."""
    text = caption if isinstance(caption, str) else None  # kept with a rejected id or image reference
    if raw_id is None or raw_id == "":
        source_id = None
    elif isinstance(raw_id, str):
        if not raw_id.isascii() and _SURROGATE.search(raw_id):
            return _bad(path, index, "bad_utf8", "id has bytes that are not valid UTF-8", text, raw_id)
        source_id = raw_id
    elif isinstance(raw_id, int) and not isinstance(raw_id, bool):
        source_id = str(raw_id)
    else:
        detail = f"id is a {type(raw_id).__name__} ({_short(raw_id)}), not a string or integer"
        return _bad(path, index, "bad_record", detail, text)
    if raw_image is None or raw_image == "":
        image_ref = None
    elif isinstance(raw_image, str):
        if not raw_image.isascii() and _SURROGATE.search(raw_image):
            return _bad(
                path, index, "bad_utf8", "image reference has bytes that are not valid UTF-8", text, source_id
            )
        image_ref = raw_image
    else:
        detail = f"image reference is a {type(raw_image).__name__} ({_short(raw_image)}), not a string"
        return _bad(path, index, "bad_record", detail, text, source_id)
    if caption is _MISSING:
        return _bad(path, index, "missing_field", "record has no caption or text field", None, source_id)
    if caption is None:
        return _bad(path, index, "missing_field", "caption is null", None, source_id)
    if not isinstance(caption, str):
        detail = f"caption is a {type(caption).__name__} ({_short(caption)}), not a string"
        return _bad(path, index, "not_a_string", detail, None, source_id)
    return _judge_caption(path, index, caption, source_id, image_ref, limit)


def _from_object(path: str, index: int, obj: Any, limit: int) -> Record | BadRecord:
    if not isinstance(obj, dict):
        return _bad(
            path, index, "bad_record", f"record is a {type(obj).__name__} ({_short(obj)}), not an object"
        )
    caption = obj.get("caption", _MISSING)
    if caption is _MISSING:
        caption = obj.get("text", _MISSING)
    image = None
    for key in _IMAGE_KEYS:
        image = obj.get(key)
        if image is not None:
            break
    return _judge(path, index, caption, obj.get("id"), image, limit)


# ---------------------------------------------------------------------------------------------- opening


def _open_binary(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot open ({exc.strerror})") from None


def _read_json_text(path: str) -> str:
    """Whole JSON document as text; undecodable bytes become surrogates so only their records get rejected."""
    with _open_binary(path) as f:
        data = f.read()
    text = data.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise UnreadableFileError(f"{path}: file is empty")
    return text


def _not_json_error(path: str, text: str, expected: str) -> UnreadableFileError:
    try:
        value = json.loads(text)
    except RecursionError:
        return UnreadableFileError(f"{path}: {_TOO_DEEP}; expected {expected}")
    except json.JSONDecodeError as exc:
        return UnreadableFileError(
            f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); expected {expected}"
        )
    return UnreadableFileError(f"{path}: the JSON document is a {type(value).__name__}; expected {expected}")


# ---------------------------------------------------------------------------------------------- JSON lists


def _json_list_items(path: str, text: str) -> Iterator[tuple[int, Any] | BadRecord]:
    """Elements of a JSON list one at a time, so a truncated or damaged file still gives its good prefix."""
    decoder = json.JSONDecoder()
    end = len(text)
    pos = _JSON_WS.match(text, 0).end() + 1  # past "["
    pos = _JSON_WS.match(text, pos).end()
    if pos < end and text[pos] == "]":
        pos = _JSON_WS.match(text, pos + 1).end()
        if pos < end:
            yield _bad(path, 1, "bad_json", f"unexpected text after the end of the list at character {pos}")
        return
    count = 0
    while True:
        index = count + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except RecursionError:
            yield _bad(
                path, index, "bad_json", f"element {index}: {_TOO_DEEP}; the rest of the file was not read"
            )
            return
        except json.JSONDecodeError as exc:
            if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
                detail = f"file ends inside element {index}, after {count} complete elements"
                yield _bad(path, index, "truncated_file", detail)
            else:
                detail = (
                    f"invalid JSON in element {index} ({exc.msg}, line {exc.lineno} column {exc.colno});"
                    " the rest of the file was not read"
                )
                yield _bad(path, index, "bad_json", detail)
            return
        count = index
        yield index, obj
        pos = _JSON_WS.match(text, pos).end()
        if pos >= end:
            yield _bad(
                path, index + 1, "truncated_file", f"file ends after element {index} without closing ']'"
            )
            return
        char = text[pos]
        if char == ",":
            pos = _JSON_WS.match(text, pos + 1).end()
            continue
        if char == "]":
            pos = _JSON_WS.match(text, pos + 1).end()
            if pos < end:
                detail = f"unexpected text after the end of the list at character {pos}"
                yield _bad(path, index + 1, "bad_json", detail)
            return
        detail = (
            f"expected ',' or ']' after element {index} at character {pos}; the rest of the file was not read"
        )
        yield _bad(path, index + 1, "bad_json", detail)
        return


def _list_text(path: str, expected: str) -> str:
    text = _read_json_text(path)
    if not text.lstrip().startswith("["):
        raise _not_json_error(path, text, expected)
    return text


def _read_json(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    text = _list_text(path, 'a list of {"caption": ...} objects')
    return _json_records(path, text, max_caption_chars)


def _json_records(path: str, text: str, limit: int) -> Iterator[Record | BadRecord]:
    for item in _json_list_items(path, text):
        if type(item) is BadRecord:
            yield item
        else:
            yield _from_object(path, item[0], item[1], limit)


def _read_llava(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    text = _list_text(path, 'a list of {"id", "image", "conversations"} objects')
    return _llava_records(path, text, max_caption_chars)


def _llava_records(path: str, text: str, limit: int) -> Iterator[Record | BadRecord]:
    for item in _json_list_items(path, text):
        if type(item) is BadRecord:
            yield item
            continue
        index, obj = item
        if not isinstance(obj, dict):
            yield _bad(path, index, "bad_record", f"item is a {type(obj).__name__}, not an object")
            continue
        turns = obj.get("conversations", _MISSING)
        caption: Any = _MISSING
        if turns is not _MISSING:
            if not isinstance(turns, list) or not all(isinstance(turn, dict) for turn in turns):
                yield _bad(path, index, "bad_record", "conversations is not a list of objects")
                continue
            for turn in turns:
                if turn.get("from") == "gpt":
                    caption = turn.get("value", _MISSING)
                    break
        record = _judge(path, index, caption, obj.get("id"), obj.get("image"), limit)
        if type(record) is BadRecord and record.reason == "missing_field" and caption is _MISSING:
            record = _bad(
                path, index, "missing_field", "item has no gpt turn with a value", None, record.source_id
            )
        yield record


def _read_coco(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    text = _read_json_text(path)
    expected = 'a COCO captions object with "images" and "annotations" lists'
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise _not_json_error(path, text, expected) from None
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
            yield _bad(path, index, "bad_record", f"annotation is a {type(ann).__name__}, not an object")
            continue
        image_id = ann.get("image_id")
        # An image_id the images list does not know leaves the caption usable, just without an image_ref.
        image = files.get(image_id) if isinstance(image_id, int | str) else None
        yield _judge(path, index, ann.get("caption", _MISSING), ann.get("id"), image, limit)


# ---------------------------------------------------------------------------------------------- line formats


def _decoded_lines(f: BinaryIO, path: str) -> Iterator[tuple[int, str | BadRecord]]:
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
                line = _bad(path, index, "bad_utf8", detail, raw.decode("utf-8", "replace"))
            yield index, line


def _read_txt(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    return _txt_records(_open_binary(path), path, max_caption_chars)


def _txt_records(f: BinaryIO, path: str, limit: int) -> Iterator[Record | BadRecord]:
    for index, line in _decoded_lines(f, path):
        yield line if type(line) is BadRecord else _judge_caption(path, index, line, None, None, limit)


def _read_jsonl(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    return _jsonl_records(_open_binary(path), path, max_caption_chars)


def _jsonl_records(f: BinaryIO, path: str, limit: int) -> Iterator[Record | BadRecord]:
    loads = json.loads
    for index, line in _decoded_lines(f, path):
        if type(line) is BadRecord:
            yield line
            continue
        try:
            obj = loads(line)
        except json.JSONDecodeError as exc:
            detail = "empty line" if not line.strip() else f"invalid JSON ({exc.msg}, column {exc.colno})"
            yield _bad(path, index, "bad_json", detail, line)
            continue
        except RecursionError:
            yield _bad(path, index, "bad_json", _TOO_DEEP, line)
            continue
        yield _from_object(path, index, obj, limit)


def _read_flickr8k(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    return _flickr8k_records(_open_binary(path), path, max_caption_chars)


def _flickr8k_records(f: BinaryIO, path: str, limit: int) -> Iterator[Record | BadRecord]:
    match = _FLICKR_LINE.fullmatch
    for index, line in _decoded_lines(f, path):
        if type(line) is BadRecord:
            yield line
            continue
        parts = match(line)
        if parts is None:
            detail = "line does not look like <image>#<n><TAB><caption>"
            yield _bad(path, index, "bad_record", detail, line)
            continue
        image_ref, _, caption = parts.groups()
        source_id = f"{image_ref}#{parts.group(2)}"
        if caption is None:
            yield _bad(path, index, "missing_field", "line has an image key but no caption", None, source_id)
        else:
            yield _judge_caption(path, index, caption, source_id, image_ref, limit)


# ---------------------------------------------------------------------------------------------- tables


def _open_text(path: str) -> TextIO:
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot open ({exc.strerror})") from None


def _column(names: Sequence[str], keys: Sequence[str]) -> str | None:
    return next((key for key in keys if key in names), None)


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
    caption_col = _column(header, _CAPTION_KEYS)
    if caption_col is None:
        f.close()
        shown = ", ".join(header)[:200]
        raise UnreadableFileError(f"{path}: no caption or text column in the header (columns: {shown})")
    return _delimited_records(f, lines, dialect, header, caption_col, path, max_caption_chars)


def _delimited_records(
    f: TextIO, lines: _Lines, dialect: str, header: list[str], caption_col: str, path: str, limit: int
) -> Iterator[Record | BadRecord]:
    width = len(header)
    caption_at = header.index(caption_col)
    id_at = header.index("id") if "id" in header else None
    image_col = _column(header, _IMAGE_KEYS)
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
                yield _bad(path, index, "bad_csv", f"row cannot be parsed ({exc}); skipped its line", line)
                reader = csv.reader(lines, dialect)  # a fresh parser state from the next line
                continue
            if not row:
                yield _bad(path, index, "empty_caption", "blank row", "")
                continue
            if len(row) != width:
                if len(lines.taken) > 1:  # a stray quote joined lines: reject the first, re-read the rest
                    detail = (
                        f"row has {len(row)} fields across {len(lines.taken)} lines, the header has {width}; "
                        "skipped its first line"
                    )
                    line = lines.reject_row()
                    reader = csv.reader(lines, dialect)
                    yield _bad(path, index, "bad_csv", detail, line)
                    continue
                detail = f"row has {len(row)} fields, the header has {width}"
                yield _bad(path, index, "bad_csv", detail, "\t".join(row))
                continue
            raw_id = row[id_at] if id_at is not None else None
            image = row[image_at] if image_at is not None else None
            yield _judge(path, index, row[caption_at], raw_id, image, limit)


def _read_csv(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    return _read_delimited(path, max_caption_chars=max_caption_chars, dialect="excel")


def _read_tsv(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    return _read_delimited(path, max_caption_chars=max_caption_chars, dialect="excel-tab")


def _read_parquet(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
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
    caption_col = _column(names, _CAPTION_KEYS)
    if caption_col is None:
        shown = ", ".join(names)[:200]
        parquet.close()
        raise UnreadableFileError(f"{path}: no caption or text column (columns: {shown})")
    columns = [caption_col, "id" if "id" in names else None, _column(names, _IMAGE_KEYS)]
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
                    yield _judge(path, index, caption, raw_id, image, limit)
        except (OSError, pa.ArrowException) as exc:
            message = " ".join(str(exc).split())
            raise UnreadableFileError(f"{path}: damaged after row {index} ({message})") from None


# ---------------------------------------------------------------------------------------------- public API

FORMATS: dict[str, Callable[..., Iterator[Record | BadRecord]]] = {
    "json": _read_json,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
    "csv": _read_csv,
    "tsv": _read_tsv,
    "txt": _read_txt,
    "coco": _read_coco,
    "flickr8k": _read_flickr8k,
    "llava": _read_llava,
}
"""Reader per format name; each takes `(path, *, max_caption_chars)` and yields Records and BadRecords."""

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}


def _peek(path: str) -> bytes:
    with _open_binary(path) as f:
        head = f.read(_PEEK_BYTES)
    return head[3:] if head.startswith(codecs.BOM_UTF8) else head


def _detect_json(head: str) -> str:
    start = _JSON_WS.match(head).end()
    if head.startswith("{", start):
        return "coco"  # the only object-shaped format; its reader checks for images/annotations
    if not head.startswith("[", start):
        return "json"  # not JSON at all: the json reader says so
    pos = _JSON_WS.match(head, start + 1).end()
    try:
        first, _ = json.JSONDecoder().raw_decode(head, pos)
    except (json.JSONDecodeError, RecursionError):
        # First element larger than the peek (or damaged): fall back to spotting the key.
        return "llava" if '"conversations"' in head else "json"
    return "llava" if isinstance(first, dict) and "conversations" in first else "json"


def _detect_txt(head: str) -> str:
    # Most (not all) of the first lines must look like `<image>.jpg#<n><TAB>`: one damaged line is allowed.
    lines = [line for line in head.splitlines()[:20] if line.strip()][:10]
    if lines and 2 * sum(bool(_FLICKR_DETECT.match(line)) for line in lines) > len(lines):
        return "flickr8k"
    return "txt"


def detect_format(path: str) -> str:
    """Guess a file's format from its extension and first bytes, so users can pass mixed inputs."""
    extension = os.path.splitext(path)[1].lower()
    if extension in _EXTENSIONS:
        return _EXTENSIONS[extension]
    if extension == ".json":
        return _detect_json(_peek(path).decode("utf-8", "replace"))
    if extension == ".txt":
        return _detect_txt(_peek(path).decode("utf-8", "replace"))
    known = ", ".join(sorted([*_EXTENSIONS, ".json", ".txt"]))
    raise UnreadableFileError(f"{path}: unknown file extension {extension or '(none)'!r}; known: {known}")


def read(path: str, *, fmt: str = "auto", max_caption_chars: int = 2000) -> Iterator[Record | BadRecord]:
    """Stream a caption file as Records and BadRecords; an unusable file raises before anything is yielded."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown caption format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    return FORMATS[fmt](path, max_caption_chars=max_caption_chars)


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Turn input arguments (paths and globs) into an ordered, duplicate-free file list, failing on typos."""
    paths: list[str] = []
    seen: set[str] = set()
    for pattern in inputs:
        if _GLOB_MAGIC.search(pattern):
            matches = [match for match in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(match)]
            if not matches:
                raise UnreadableFileError(f"{pattern}: no file matches this pattern")
        elif os.path.isdir(pattern):
            raise UnreadableFileError(f"{pattern}: is a directory; pass a glob such as {pattern}/*.jsonl")
        elif not os.path.exists(pattern):
            raise UnreadableFileError(f"{pattern}: no such file")
        else:
            matches = [pattern]
        for match in matches:
            key = os.path.realpath(match)
            if key not in seen:
                seen.add(key)
                paths.append(match)
    return paths
