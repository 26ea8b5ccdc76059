"""The `flickr8k` format: Flickr8k.token.txt lines, `<name>#<n>` then a tab then the caption.

A single space instead of the tab is accepted too: the published Flickr8k.token.txt has a few such lines.
`<name>#<n>` without a caption is `missing_field`; anything else that does not look like that (an empty
line included) is `bad_record`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from synthvlm.readers.base import BadRecord, Record, decoded_lines, judge_caption, open_binary, reject

_FLICKR_LINE = re.compile(r"(\S+)#(\d+)(?:[\t ](.*))?", re.DOTALL)


def read_flickr8k(path: str, *, max_caption_chars: int) -> Iterator[Record | BadRecord]:
    """Stream a Flickr8k token file's lines as Records (id `<name>#<n>`, image `<name>`) and BadRecords."""
    return _flickr8k_records(open_binary(path), path, max_caption_chars)


def _flickr8k_records(f: BinaryIO, path: str, limit: int) -> Iterator[Record | BadRecord]:
    match = _FLICKR_LINE.fullmatch
    for index, line in decoded_lines(f, path):
        if type(line) is BadRecord:
            yield line
            continue
        parts = match(line)
        if parts is None:
            detail = "line does not look like <image>#<n><TAB><caption>"
            yield reject(path, index, "bad_record", detail, line)
            continue
        image_ref, _, caption = parts.groups()
        source_id = f"{image_ref}#{parts.group(2)}"
        if caption is None:
            detail = "line has an image key but no caption"
            yield reject(path, index, "missing_field", detail, None, source_id)
        else:
            yield judge_caption(path, index, caption, source_id, image_ref, limit)
