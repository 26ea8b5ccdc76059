"""Caption-file readers: every entry of a source file becomes a Record or a BadRecord, never nothing.

Each reader streams its file and yields, in file order, one `Record` per usable caption and one
`BadRecord` per entry that cannot become a caption, so the ingest stage can prove counts in == counts out.
For line formats (jsonl, txt, flickr8k) `#Records + #BadRecords` equals the number of lines (a final line
terminator does not start another line); for csv/tsv it equals the number of data rows; for parquet the
number of rows; for JSON lists, COCO and LLaVA the number of elements, plus one BadRecord when a JSON list
stops early (`truncated_file` or `bad_json`).

One file per format (`FORMATS` names them); what a caption, id or image reference must be is judged once,
in `readers.base`, so these decisions hold for every format:
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
- A UTF-8 byte-order mark is dropped; CRLF line endings are ordinary line endings.
Format-specific rules (Flickr8k line shape, csv/tsv quoting, damaged JSON lists) are in each format's file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from synthvlm.readers.base import REASONS, BadRecord, Record, UnreadableFileError
from synthvlm.readers.coco import read_coco
from synthvlm.readers.delimited import read_csv, read_tsv
from synthvlm.readers.detect import detect_format, expand_inputs
from synthvlm.readers.flickr8k import read_flickr8k
from synthvlm.readers.json_list import read_json
from synthvlm.readers.jsonl import read_jsonl
from synthvlm.readers.llava import read_llava
from synthvlm.readers.parquet import read_parquet
from synthvlm.readers.text import read_txt

__all__ = [
    "FORMATS",
    "REASONS",
    "BadRecord",
    "Record",
    "UnreadableFileError",
    "detect_format",
    "expand_inputs",
    "read",
]

FORMATS: dict[str, Callable[..., Iterator[Record | BadRecord]]] = {
    "json": read_json,
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "csv": read_csv,
    "tsv": read_tsv,
    "txt": read_txt,
    "coco": read_coco,
    "flickr8k": read_flickr8k,
    "llava": read_llava,
}
"""Reader per format name; each takes `(path, *, max_caption_chars)` and yields Records and BadRecords."""


def read(path: str, *, fmt: str = "auto", max_caption_chars: int = 2000) -> Iterator[Record | BadRecord]:
    """Stream a caption file as Records and BadRecords; an unusable file raises before anything is yielded."""
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown caption format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    return FORMATS[fmt](path, max_caption_chars=max_caption_chars)
