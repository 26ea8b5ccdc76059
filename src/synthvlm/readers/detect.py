"""Which format a caption file is, from its extension and first bytes, and which files the inputs name."""

from __future__ import annotations

import codecs
import glob
import json
import os
import re
from collections.abc import Sequence

from synthvlm.readers.base import UnreadableFileError, open_binary
from synthvlm.readers.jsondoc import JSON_WS

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}
_FLICKR_DETECT = re.compile(r"[^\s#]+\.(?:jpe?g|png|gif|bmp|webp|tiff?)[^\s#]*#\d+(?:[\t ]|$)", re.IGNORECASE)
_PEEK_BYTES = 65536
_GLOB_MAGIC = re.compile(r"[*?[]")


def _peek(path: str) -> bytes:
    with open_binary(path) as f:
        head = f.read(_PEEK_BYTES)
    return head[3:] if head.startswith(codecs.BOM_UTF8) else head


def _detect_json(head: str) -> str:
    start = JSON_WS.match(head).end()
    if head.startswith("{", start):
        return "coco"  # the only object-shaped format; its reader checks for images/annotations
    if not head.startswith("[", start):
        return "json"  # not JSON at all: the json reader says so
    pos = JSON_WS.match(head, start + 1).end()
    try:
        first, _ = json.JSONDecoder().raw_decode(head, pos)
    except (ValueError, RecursionError):  # JSONDecodeError, or an integer too long for int()
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
