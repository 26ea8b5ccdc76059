"""Whole-document JSON, shared by the json, llava and coco readers (and by format detection).

A JSON list is decoded one element at a time, so a truncated or damaged file still gives its good prefix
as records and costs one BadRecord (`truncated_file` or `bad_json`) where it stops. JSON nested deeper
than the parser's recursion limit, or with an integer longer than Python converts (4300 digits by
default), is `bad_json` for that element, and the rest of the file is not read.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

from synthvlm.readers.base import BadRecord, UnreadableFileError, open_binary, reject

JSON_WS = re.compile(r"[ \t\n\r]*")
"""JSON's insignificant whitespace (exactly these four characters), matched to step over it."""
TOO_DEEP = "JSON nested deeper than the parser's recursion limit"
"""Detail text for JSON the parser gives up on with a RecursionError."""


def parse_failure(exc: RecursionError | ValueError) -> str:
    """Detail for JSON the parser gives up on without a position: too deep, or an integer too long."""
    if isinstance(exc, RecursionError):
        return TOO_DEEP
    # The only other ValueError json raises: int() refuses longer digit strings (CVE-2020-10735).
    return f"JSON integer longer than Python's limit of {sys.get_int_max_str_digits()} digits"


def read_json_text(path: str) -> str:
    """Whole JSON document as text; undecodable bytes become surrogates so only their records get rejected."""
    with open_binary(path) as f:
        data = f.read()
    text = data.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise UnreadableFileError(f"{path}: file is empty")
    return text


def not_json_error(path: str, text: str, expected: str) -> UnreadableFileError:
    """The one-line error for a document that is not JSON, or is JSON of the wrong shape."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return UnreadableFileError(
            f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); expected {expected}"
        )
    except (RecursionError, ValueError) as exc:
        return UnreadableFileError(f"{path}: {parse_failure(exc)}; expected {expected}")
    return UnreadableFileError(f"{path}: the JSON document is a {type(value).__name__}; expected {expected}")


def list_text(path: str, expected: str) -> str:
    """A file's text, checked to start as a JSON list (`expected` names the list's shape in the error)."""
    text = read_json_text(path)
    # JSON whitespace only: str.lstrip() would also step over "\xa0" or "\x1c", which JSON does not allow.
    if not text.startswith("[", JSON_WS.match(text).end()):
        raise not_json_error(path, text, expected)
    return text


def json_list_items(path: str, text: str) -> Iterator[tuple[int, Any] | BadRecord]:
    """Elements of a JSON list one at a time, so a truncated or damaged file still gives its good prefix."""
    decoder = json.JSONDecoder()
    end = len(text)
    pos = JSON_WS.match(text, 0).end() + 1  # past "["
    pos = JSON_WS.match(text, pos).end()
    if pos < end and text[pos] == "]":
        pos = JSON_WS.match(text, pos + 1).end()
        if pos < end:
            yield reject(path, 1, "bad_json", f"unexpected text after the end of the list at character {pos}")
        return
    count = 0
    while True:
        index = count + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
                detail = f"file ends inside element {index}, after {count} complete elements"
                yield reject(path, index, "truncated_file", detail)
            else:
                detail = (
                    f"invalid JSON in element {index} ({exc.msg}, line {exc.lineno} column {exc.colno});"
                    " the rest of the file was not read"
                )
                yield reject(path, index, "bad_json", detail)
            return
        except (RecursionError, ValueError) as exc:
            detail = f"element {index}: {parse_failure(exc)}; the rest of the file was not read"
            yield reject(path, index, "bad_json", detail)
            return
        count = index
        yield index, obj
        pos = JSON_WS.match(text, pos).end()
        if pos >= end:
            yield reject(
                path, index + 1, "truncated_file", f"file ends after element {index} without closing ']'"
            )
            return
        char = text[pos]
        if char == ",":
            pos = JSON_WS.match(text, pos + 1).end()
            continue
        if char == "]":
            pos = JSON_WS.match(text, pos + 1).end()
            if pos < end:
                detail = f"unexpected text after the end of the list at character {pos}"
                yield reject(path, index + 1, "bad_json", detail)
            return
        detail = (
            f"expected ',' or ']' after element {index} at character {pos}; the rest of the file was not read"
        )
        yield reject(path, index + 1, "bad_json", detail)
        return
