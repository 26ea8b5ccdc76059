"""Fuzzing every caption reader (Hypothesis): whatever the bytes, no traceback and nothing lost.

For each format the strategies build files from a known structure (valid-but-odd documents: wrong types,
nulls, nested values, lone surrogates, control characters, BOMs, CRLF, very long lines, duplicate ids and
keys, missing fields, truncations, damage) or from raw bytes, and every case must hold:
- reading raises nothing but UnreadableFileError, whose message is one encodable line naming the file;
- Records and BadRecords are numbered 1, 2, ... and as many as the structure has entries (line formats:
  lines; csv/tsv: data rows; json/llava: list elements up to where the list stops, plus one BadRecord for
  the stop; coco: annotations; parquet: rows);
- every BadRecord has a reason from REASONS and a one-line detail, every string is encodable UTF-8;
- reading the same bytes twice gives equal results.

Runs are seeded (`derandomize=True`, no example database): `make test` runs 2,015 examples, `make test-all`
(the fault tier, `--run-fault`) five times as many as well.
"""

from __future__ import annotations

import csv
import io
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthvlm import pipeline
from synthvlm.config import RunConfig
from synthvlm.readers import REASONS, BadRecord, Record, UnreadableFileError, detect_format, read
from synthvlm.readers.base import CAPTION_KEYS, IMAGE_KEYS, TRAINER_TOKENS, find_column

TIERS = [pytest.param(1, id="default"), pytest.param(5, id="long", marks=pytest.mark.fault)]
"""Example-count multiplier per tier: the long runs (`make test-all`) take five times the default examples."""

EXTENSIONS = {
    "json": "json",
    "jsonl": "jsonl",
    "parquet": "parquet",
    "csv": "csv",
    "tsv": "tsv",
    "txt": "txt",
    "coco": "json",
    "flickr8k": "txt",
    "llava": "json",
}


def fuzz(strategy: st.SearchStrategy[Any], examples: int, check: Callable[[Any], None]) -> None:
    """Run `check` on exactly `examples` values of `strategy`, the same values on every run."""
    ran: list[None] = []

    @settings(
        derandomize=True,
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(strategy)
    def run(value: Any) -> None:
        ran.append(None)
        check(value)

    run()
    # Hypothesis stops early when it runs out of distinct inputs; these strategies never should.
    assert len(ran) == examples, f"{len(ran)} examples ran, {examples} asked for"


# ------------------------------------------------------------------------------------------------ text

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def encode(text: str) -> bytes:
    """UTF-8, except that U+DC80..U+DCFF become the raw byte they stand for (surrogateescape) and other lone
    surrogates their 3-byte form: how a file with undecodable bytes is made from a str."""
    out = []
    pos = 0
    for match in _SURROGATE.finditer(text):
        out.append(text[pos : match.start()].encode())
        code = ord(match.group())
        if 0xDC80 <= code <= 0xDCFF:
            out.append(bytes([code - 0xDC00]))
        else:
            out.append(match.group().encode("utf-8", "surrogatepass"))
        pos = match.end()
    out.append(text[pos:].encode())
    return b"".join(out)


SPECIALS = [
    *"\x00\x01\x1b\x1c\x1d\x1e\x1f\x7f\x85\x9f\xa0\u2028\u2029\u3000\ufeff\ufffd\u200b\t\r\n\x0b\x0c",
    "\r\n",
    *" \"',;\\#[]{}<>",
    *TRAINER_TOKENS,
    "é",
    "日本語",
    "🙂",
    "a",
    "A dog runs.",
    "1.jpg",
    "x.jpg#0\t",
    "\ud800",
    "\udfff",
    "\udcff",
]
_PIECE = st.one_of(
    st.sampled_from(SPECIALS),
    st.text(max_size=6),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.binary(min_size=1, max_size=3).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
)
TEXT = st.lists(_PIECE, max_size=5).map("".join)
"""Short odd text: specials, any unicode, lone surrogates and raw (surrogateescaped) bytes."""
LONG = st.builds(
    operator.mul,
    st.sampled_from(["a", "b ", "é", "\t", "日", "<"]),
    st.sampled_from([39, 40, 41, 1999, 2000, 2001, 70_000]),
)
"""Captions around both caption limits the tests use, and very long lines."""
CAPTION_TEXT = st.one_of(TEXT, TEXT, TEXT, LONG)
LIMIT = st.sampled_from([40, 2000])

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=5,
)
ID = st.one_of(
    st.sampled_from(["1", "a", "", " ", "a/b", "x.jpg#0", "dup"]),
    st.integers(-2, 2),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(),
    TEXT,
    JSON_VALUE,
)
IMAGE = st.one_of(st.sampled_from(["1.jpg", "", "http://x/1.jpg"]), st.none(), TEXT, JSON_VALUE)
CAPTION = st.one_of(CAPTION_TEXT, CAPTION_TEXT, JSON_VALUE)
CAPTION_OBJECT = st.fixed_dictionaries(
    {},
    optional={
        "caption": CAPTION,
        "text": CAPTION,
        "id": ID,
        "image": IMAGE,
        "image_path": IMAGE,
        "file_name": IMAGE,
        "url": IMAGE,
        "conversations": JSON_VALUE,
        "extra": JSON_VALUE,
    },
)
TURN = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={"from": st.sampled_from(["human", "gpt", "GPT", "system"]) | JSON_VALUE, "value": CAPTION},
    ),
    JSON_VALUE,
)
LLAVA_ITEM = st.fixed_dictionaries(
    {},
    optional={"id": ID, "image": IMAGE, "conversations": st.lists(TURN, max_size=3) | JSON_VALUE},
)

DEEP = 5000
"""Nesting no parser stack takes (RecursionError wherever it is parsed), unlike a borderline depth."""
SPECIAL_ELEMENTS = [
    '{"caption": "a", "caption": 1}',
    '{"caption": 1, "caption": "the last key wins"}',
    '{"text": "a", "caption": null}',
    '{"caption": "a\\u0000b"}',
    '{"caption": "\\ud800"}',
    '{"id": "\\udcff", "caption": "a"}',
    '{"caption": "a", "image": "\\udfff"}',
    "NaN",
    "-Infinity",
    "1e999",
    "-0",
    '""',
    "[]",
    "{}",
    "null",
    "1" * 5000,
    '{"caption": "a", "n": -' + "9" * 4301 + "}",
    '{"caption": ' + "[" * 500 + "]" * 500 + "}",
    "[" * DEEP + "]" * DEEP,
    '{"caption": ' + "[" * DEEP,
]
"""Element texts json.dumps cannot write: duplicate keys, escapes, huge numbers, deep nesting."""


def dumped(value: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    """JSON text of generated values, in several writers' styles (ASCII or not, indented or not)."""
    return st.builds(
        json.dumps,
        value,
        ensure_ascii=st.booleans(),
        indent=st.sampled_from([None, None, 1, "\t"]),
        sort_keys=st.booleans(),
    )


ELEMENT = st.one_of(
    dumped(CAPTION_OBJECT), dumped(CAPTION_OBJECT), dumped(JSON_VALUE), st.sampled_from(SPECIAL_ELEMENTS)
)
LLAVA_ELEMENT = st.one_of(
    dumped(LLAVA_ITEM), dumped(LLAVA_ITEM), dumped(JSON_VALUE), st.sampled_from(SPECIAL_ELEMENTS)
)


# ------------------------------------------------------------------------------------------------ checks


@dataclass(frozen=True)
class Case:
    """A generated file and what its structure says reading it must give."""

    data: bytes
    count: int | None = None
    """Records + BadRecords, when the structure fixes it."""
    at_most: int | None = None
    """An upper bound on Records + BadRecords, when only that is known."""
    unreadable: bool | None = False
    """True: must raise UnreadableFileError; None: may."""
    limit: int = 2000


def encodable(text: str) -> bool:
    return _SURROGATE.search(text) is None


def check_error(exc: UnreadableFileError, path: str) -> None:
    message = str(exc)
    assert message.startswith(f"{path}: "), message
    assert len(message.splitlines()) == 1, message
    assert encodable(message), ascii(message)


def check_items(items: list[Record | BadRecord], path: str, limit: int) -> None:
    assert [item.source_index for item in items] == list(range(1, len(items) + 1))
    for item in items:
        assert type(item) in (Record, BadRecord)
        assert item.source_file == path
        assert item.source_id is None or (item.source_id != "" and encodable(item.source_id)), item
        if type(item) is Record:
            caption = item.caption
            assert caption and caption == " ".join(caption.split()) and len(caption) <= limit, item
            assert _CONTROL.search(caption) is None and not any(t in caption for t in TRAINER_TOKENS), item
            assert item.image_ref is None or (item.image_ref != "" and encodable(item.image_ref)), item
        else:
            assert item.reason in REASONS, item
            assert len(item.detail.splitlines()) == 1 and encodable(item.detail), item
            assert item.caption is None or (len(item.caption) <= 1000 and encodable(item.caption)), item


def read_once(path: str, fmt: str, limit: int) -> list[Record | BadRecord] | str:
    """Everything reading a file gives: its items, or the UnreadableFileError's message."""
    try:
        items = read(path, fmt=fmt, max_caption_chars=limit)
    except UnreadableFileError as exc:
        check_error(exc, path)
        return str(exc)
    try:
        return list(items)
    except UnreadableFileError as exc:
        # Parquet alone finds damage only when it reaches it; every other format raises before yielding.
        assert fmt == "parquet", exc
        check_error(exc, path)
        return str(exc)


def check_case(directory: Path, fmt: str, case: Case) -> None:
    """Write the case to a file, read it twice and check every invariant."""
    path = directory / f"case.{EXTENSIONS[fmt]}"
    path.write_bytes(case.data)
    if path.suffix in (".json", ".txt"):
        assert detect_format(str(path)) in (
            {"json", "llava", "coco"} if fmt in ("json", "llava", "coco") else {"txt", "flickr8k"}
        )
    first = read_once(str(path), fmt, case.limit)
    assert read_once(str(path), fmt, case.limit) == first, "reading the same bytes twice differs"
    if isinstance(first, str):
        assert case.unreadable is not False, f"unexpected UnreadableFileError: {first}"
        return
    assert case.unreadable is not True, f"expected UnreadableFileError, got {len(first)} items"
    check_items(first, str(path), case.limit)
    if case.count is not None:
        assert len(first) == case.count, [(i.source_index, getattr(i, "reason", "ok")) for i in first]
    if case.at_most is not None:
        assert len(first) <= case.at_most


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example's file (each example overwrites it)."""
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------------------------------------------ lines


def line_count(data: bytes) -> int:
    """Lines the line formats count: split on LF only, a final terminator does not start another line."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


FLICKR_LINE = st.one_of(
    st.builds(
        "{}#{}{}{}".format,
        st.sampled_from(["1000268201_693b08cb0e.jpg", "a.jpg", "a b.png", "", "#", "x.jpg#1"]) | TEXT,
        st.sampled_from(["0", "4", "12", "-1", "", "x"]),
        st.sampled_from(["\t", " ", "", "\t\t", "  ", "\t "]),
        CAPTION_TEXT,
    ),
    TEXT,
)
LINES = {"txt": CAPTION_TEXT, "jsonl": ELEMENT | TEXT, "flickr8k": FLICKR_LINE}


@st.composite
def line_files(draw: st.DrawFn, fmt: str) -> Case:
    """A line-format file: odd lines, LF or CRLF, BOM or not, maybe duplicated, cut or bytes spliced in."""
    lines = draw(st.lists(LINES[fmt] | st.sampled_from(["", " ", "\r"]), max_size=8))
    if draw(st.booleans()):
        lines += lines[: draw(st.integers(0, len(lines)))]  # duplicate lines: duplicate ids and captions
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + encode(text)
    edit = draw(st.sampled_from(["none", "none", "cut", "splice"]))
    at = draw(st.integers(0, len(data)))
    if edit == "cut":
        data = data[:at]
    elif edit == "splice":
        data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
    return Case(data, count=line_count(data), limit=draw(LIMIT))


@pytest.mark.parametrize("scale", TIERS)
@pytest.mark.parametrize("fmt", ["txt", "jsonl", "flickr8k"])
def test_line_formats(directory: Path, fmt: str, scale: int) -> None:
    """Every line is one Record or BadRecord, whatever the line holds."""
    fuzz(line_files(fmt), 150 * scale, lambda case: check_case(directory, fmt, case))


# ------------------------------------------------------------------------------------------------ JSON lists


def _parsed_end(text: str) -> int | None:
    """Where the parser stops reading the JSON value `text` starts with ("12" of a cut "123" is a value, so
    is "-0" of "-0."), or None when it gives up: invalid, too deep, an integer too long for Python."""
    try:
        return json.JSONDecoder().raw_decode(text)[1]
    except (ValueError, RecursionError):
        return None


@st.composite
def json_lists(draw: st.DrawFn, element: st.SearchStrategy[str]) -> Case:
    """A JSON list of odd elements: whole, cut anywhere, a separator damaged, text after it, or odd spaces
    before it; the count follows where the list stops."""
    elements = draw(st.lists(element, max_size=6))
    gap = st.sampled_from(["", "", " ", "\n", "\r\n", "\t "])
    text = draw(gap)
    bracket = len(text)
    text += "[" + draw(gap)
    spans: list[tuple[int, int]] = []
    commas: list[int] = []
    for number, value in enumerate(elements):
        if number:
            text += draw(gap)
            commas.append(len(text))
            text += "," + draw(gap)
        spans.append((len(text), len(text) + len(value)))
        text += value
    text += draw(gap)
    closed = len(text) + 1
    text += "]" + draw(gap)
    mode = draw(st.sampled_from(["whole", "cut", "cut", "damage", "trailing", "odd_space"]))
    cut = draw(st.integers(0, closed - 1)) if mode == "cut" else None
    damaged = draw(st.sampled_from(range(len(commas)))) if mode == "damage" and commas else None
    if damaged is not None:
        text = (
            text[: commas[damaged]]
            + draw(st.sampled_from([";", "}", "x", "]", "\xa0"]))
            + text[commas[damaged] + 1 :]
        )
    if mode == "trailing":
        text += draw(st.sampled_from(["x", "]", ",", "[]", "\xa0", "\x00"]))
    if mode == "odd_space":
        # Not JSON whitespace (Python's str.strip() would take some of them): the file is not a JSON list.
        text = draw(st.sampled_from(["\xa0", "\x1c", "\u3000", "\u2028", "\x0b", "\x0c", "\ufeff"])) + text
    if cut is not None:
        text = text[:cut]
    # A "\ufeff" before the list is only odd after a BOM: alone, it is the BOM.
    bom = draw(st.booleans()) or text.startswith("\ufeff")
    data = (b"\xef\xbb\xbf" if bom else b"") + encode(text)
    limit = draw(LIMIT)
    if mode == "odd_space" or (cut is not None and cut <= bracket):
        return Case(data, unreadable=True, limit=limit)
    cut = len(text) if cut is None else cut
    count = None
    for number, (start, end) in enumerate(spans):
        piece = text[start : min(end, cut)]
        stop = None if start >= cut else _parsed_end(piece)
        if stop is None:
            # The elements before, then one BadRecord where the list stops: cut off, invalid or too deep.
            count = number + 1
            break
        if stop < len(piece):
            count = number + 2  # the value the parser took, then `bad_json` at the rest of the cut element
            break
        if damaged == number:
            count = number + 2  # this element, then `bad_json` at the damaged separator
            break
    if count is None:
        count = len(elements) + (1 if cut < closed or mode == "trailing" else 0)
    return Case(data, count=count, limit=limit)


@pytest.mark.parametrize("scale", TIERS)
@pytest.mark.parametrize(
    ("fmt", "element", "examples"), [("json", ELEMENT, 250), ("llava", LLAVA_ELEMENT, 200)]
)
def test_json_lists(
    directory: Path, fmt: str, element: st.SearchStrategy[str], examples: int, scale: int
) -> None:
    """Every list element up to where the list stops is one item, plus one BadRecord for an early stop."""
    fuzz(json_lists(element), examples * scale, lambda case: check_case(directory, fmt, case))


# ------------------------------------------------------------------------------------------------ COCO

IMAGE_ID = st.one_of(
    st.integers(0, 4),
    st.sampled_from(["1", "", "a"]),
    st.booleans(),
    st.floats(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
COCO_IMAGE = st.one_of(
    st.fixed_dictionaries({"id": IMAGE_ID, "file_name": IMAGE}, optional={"height": JSON_VALUE}),
    st.fixed_dictionaries({}, optional={"id": IMAGE_ID, "file_name": IMAGE}),
    JSON_VALUE,
)
COCO_ANNOTATION = st.one_of(
    st.fixed_dictionaries({}, optional={"image_id": IMAGE_ID, "id": ID, "caption": CAPTION}), JSON_VALUE
)
_BIG_INT = "@@big-int@@"


def _image_ok(image: Any) -> bool:
    if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
        return False
    return isinstance(image["id"], int | str) and not isinstance(image["id"], bool)


@st.composite
def coco_files(draw: st.DrawFn) -> Case:
    """A COCO captions object with odd images and annotations, maybe a huge number, maybe cut."""
    images = draw(st.lists(COCO_IMAGE, max_size=4))
    annotations = draw(st.lists(COCO_ANNOTATION, max_size=6))
    doc: dict[str, Any] = {"info": draw(JSON_VALUE)}
    if draw(st.integers(0, 9)):
        doc["images"] = images
    if draw(st.integers(0, 9)):
        doc["annotations"] = annotations
    if draw(st.integers(0, 9)) == 0:
        doc["annotations"] = draw(JSON_VALUE)
    big = draw(st.integers(0, 9)) == 0
    if big:
        doc["huge"] = _BIG_INT
    text = draw(dumped(st.just(doc))).replace(f'"{_BIG_INT}"', "7" * 4400)
    cut = draw(st.none() | st.integers(0, len(text) - 1))
    if cut is not None:
        text = text[:cut]
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + encode(text)
    readable = (
        cut is None
        and not big
        and isinstance(doc.get("images"), list)
        and isinstance(doc.get("annotations"), list)
        and all(_image_ok(image) for image in doc["images"])
    )
    limit = draw(LIMIT)
    return (
        Case(data, count=len(doc["annotations"]), limit=limit)
        if readable
        else Case(data, unreadable=True, limit=limit)
    )


@pytest.mark.parametrize("scale", TIERS)
def test_coco(directory: Path, scale: int) -> None:
    """Every annotation is one item; a damaged document or images list is one UnreadableFileError."""
    fuzz(coco_files(), 150 * scale, lambda case: check_case(directory, "coco", case))


# ------------------------------------------------------------------------------------------------ CSV / TSV

HEADER_NAME = st.one_of(
    st.sampled_from(["caption", "text", "id", "image", "image_path", "file_name", "url", "extra", ""]),
    TEXT.map(lambda name: name.replace("\ufeff", "")),  # a leading BOM character is taken as a BOM
)


def physical_lines(data: bytes) -> int:
    """Lines as the csv readers see them (LF, CR and CRLF all end one)."""
    text = data.decode("utf-8-sig", "surrogateescape")
    return len(io.StringIO(text, newline="").readlines())


@st.composite
def delimited_files(draw: st.DrawFn, dialect: str) -> Case:
    """A csv/tsv file written by Python's csv module: odd header and fields (quotes, delimiters, line breaks,
    surrogates, long fields), rows of the wrong width, blank rows; or the same cut or bytes spliced in."""
    names = draw(st.lists(HEADER_NAME, min_size=1, max_size=5))
    width = len(names)
    one_line = TEXT.map(lambda field: re.sub("[\r\n]", "", field))
    rows = draw(
        st.lists(
            st.one_of(
                st.lists(CAPTION_TEXT, min_size=width, max_size=width),
                st.lists(CAPTION_TEXT, min_size=width, max_size=width),
                # A multi-line row of the wrong width is taken for a stray quote (one line rejected, the rest
                # re-read), so wrong widths are kept to one line to keep their count known.
                st.lists(one_line, max_size=width + 2).filter(lambda row: len(row) != width),
            ),
            max_size=6,
        )
    )
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    # With "\n" as terminator QUOTE_MINIMAL leaves a bare "\r" unquoted, which any reader takes as a line end.
    quoting = (
        csv.QUOTE_ALL if terminator == "\n" else draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    )
    out = io.StringIO()
    writer = csv.writer(out, dialect, lineterminator=terminator, quoting=quoting)
    writer.writerow(names)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()) and (not rows or rows[-1]):  # without its terminator a final blank row is gone
        text = text.removesuffix(terminator)
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + encode(text)
    limit = draw(LIMIT)
    edit = draw(st.sampled_from(["none", "none", "cut", "splice"]))
    if edit != "none":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + (draw(st.binary(max_size=6)) if edit == "splice" else b"")
        data += data[at:] if edit == "splice" else b""
        return Case(data, at_most=max(physical_lines(data) - 1, 0), unreadable=None, limit=limit)
    if "caption" not in names and "text" not in names:
        return Case(data, unreadable=True, limit=limit)
    return Case(data, count=len(rows), limit=limit)


@pytest.mark.parametrize("scale", TIERS)
@pytest.mark.parametrize(("fmt", "dialect"), [("csv", "excel"), ("tsv", "excel-tab")])
def test_delimited(directory: Path, fmt: str, dialect: str, scale: int) -> None:
    """Every data row is one item; damage costs lines, never more items than lines."""
    fuzz(delimited_files(dialect), 150 * scale, lambda case: check_case(directory, fmt, case))


# ------------------------------------------------------------------------------------------------ Parquet

_PLAIN_TEXT = TEXT.map(lambda text: _SURROGATE.sub("\ufffd", text))
PARQUET_COLUMNS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "string": (pa.string(), _PLAIN_TEXT | LONG),
    "large_string": (pa.large_string(), _PLAIN_TEXT),
    "binary": (pa.binary(), st.binary(max_size=8)),
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float64": (pa.float64(), st.floats()),
    "bool": (pa.bool_(), st.booleans()),
    "list": (pa.list_(pa.string()), st.lists(_PLAIN_TEXT, max_size=2)),
    "struct": (pa.struct([("a", pa.string())]), st.fixed_dictionaries({"a": _PLAIN_TEXT})),
    "not_utf8": (pa.string(), st.binary(max_size=8)),  # what a writer that does not check UTF-8 leaves
}


def raw_strings(values: list[bytes | None]) -> pa.Array:
    """A string array holding these bytes as they are, UTF-8 or not (pyarrow checks only on request)."""
    offsets = [0]
    for value in values:
        offsets.append(offsets[-1] + len(value or b""))
    mask = pa.array([value is not None for value in values], pa.bool_()).buffers()[1]
    data = b"".join(value or b"" for value in values)
    buffers = [mask, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


@st.composite
def parquet_files(draw: st.DrawFn) -> Case:
    """A Parquet table whose columns have odd names (duplicates too), types and nulls; maybe damaged."""
    rows = draw(st.integers(0, 6))
    names = draw(
        st.lists(
            st.sampled_from(
                ["caption", "text", "id", "image", "url", "file_name", "other", "a\nb", "\x0b", ""]
            ),
            min_size=1,
            max_size=4,
        )
    )
    arrays = []
    for _ in names:
        name = draw(st.sampled_from(sorted(PARQUET_COLUMNS)))
        kind, values = PARQUET_COLUMNS[name]
        column = draw(st.lists(st.none() | values, min_size=rows, max_size=rows))
        array = raw_strings(column) if name == "not_utf8" else pa.array(column, kind)
        arrays.append(array.dictionary_encode() if kind == pa.string() and draw(st.booleans()) else array)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), sink, row_group_size=draw(st.integers(1, 4)))
    data = sink.getvalue()
    limit = draw(LIMIT)
    edit = draw(st.sampled_from(["none", "none", "cut", "flip"]))
    if edit == "cut":
        return Case(data[: draw(st.integers(0, len(data) - 1))], unreadable=True, limit=limit)
    if edit == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        return Case(data, unreadable=None, limit=limit)  # a damaged count field may count anything
    picked = [find_column(names, CAPTION_KEYS), "id", find_column(names, IMAGE_KEYS)]
    if picked[0] is None or any(names.count(name) > 1 for name in picked):
        return Case(data, unreadable=True, limit=limit)  # no caption column, or two of a picked name
    return Case(data, count=rows, limit=limit)


@pytest.mark.parametrize("scale", TIERS)
def test_parquet(directory: Path, scale: int) -> None:
    """Every row is one item, whatever the column types; a damaged file is one UnreadableFileError."""
    fuzz(parquet_files(), 100 * scale, lambda case: check_case(directory, "parquet", case))


# ------------------------------------------------------------------------------------------------ raw bytes

RAW_PREFIXES = [
    b"",
    b"[",
    b"{",
    b'[{"caption": "',
    b"PAR1",
    b"\xef\xbb\xbf",
    b"id,caption\n",
    b"caption\t",
    b"a.jpg#0\t",
]


@st.composite
def raw_files(draw: st.DrawFn, fmt: str) -> Case:
    """Random bytes, some after a prefix that makes them look like the format."""
    data = draw(st.sampled_from(RAW_PREFIXES)) + draw(st.binary(max_size=300))
    if fmt == "parquet" and draw(st.booleans()):
        data += b"PAR1"
    if fmt in ("txt", "jsonl", "flickr8k"):
        return Case(data, count=line_count(data))
    if fmt in ("csv", "tsv"):
        return Case(data, at_most=max(physical_lines(data) - 1, 0), unreadable=None)
    return Case(data, unreadable=None)


@pytest.mark.parametrize("scale", TIERS)
@pytest.mark.parametrize("fmt", list(EXTENSIONS))
def test_raw_bytes(directory: Path, fmt: str, scale: int) -> None:
    """Random bytes as every format: items or one UnreadableFileError, never a traceback."""
    fuzz(raw_files(fmt), 60 * scale, lambda case: check_case(directory, fmt, case))


# ------------------------------------------------------------------------------------------------ ingest

INGEST_CASES = st.one_of(
    line_files("txt").map(lambda case: ("txt", case)),
    line_files("jsonl").map(lambda case: ("jsonl", case)),
    line_files("flickr8k").map(lambda case: ("flickr8k", case)),
    json_lists(ELEMENT).map(lambda case: ("json", case)),
    json_lists(LLAVA_ELEMENT).map(lambda case: ("llava", case)),
    coco_files().map(lambda case: ("coco", case)),
    # Damaged csv files have only a bound on their count; test_delimited checks those.
    delimited_files("excel").filter(lambda case: case.at_most is None).map(lambda case: ("csv", case)),
)


def _outputs(run: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(run)): path.read_bytes()
        for folder in ("data", "rejected")
        for path in sorted((run / "ingest" / folder).glob("*.parquet"))
    }


@pytest.mark.parametrize("scale", TIERS)
def test_ingest_stage(tmp_path: Path, scale: int) -> None:
    """Through the real ingest stage: in == kept + dropped == the file's entries, and the same bytes
    ingested twice give byte-identical pool and rejected shards."""
    runs = iter(range(10**9))

    def check(drawn: tuple[str, Case, int]) -> None:
        fmt, case, shard_rows = drawn
        number = next(runs)
        path = tmp_path / f"in{number}.{EXTENSIONS[fmt]}"
        path.write_bytes(case.data)
        config = RunConfig().updated(
            "ingest",
            inputs=[str(path)],
            max_caption_chars=case.limit,
            shard_rows=shard_rows,
            skip_bad_files=True,
        )
        first, second = (tmp_path / f"run{number}-{attempt}" for attempt in (1, 2))
        result = pipeline.run(first, config, stages=["ingest"], progress=False)["ingest"]
        assert result["in"] == result["kept"] + sum(result["dropped"].values())
        if case.unreadable:
            assert (result["in"], result["dropped"]) == (1, {"unreadable_file": 1})
        else:
            assert result["in"] == case.count
        assert pipeline.run(second, config, stages=["ingest"], progress=False)["ingest"] == result
        assert _outputs(second) == _outputs(first)

    drawn = st.tuples(INGEST_CASES, st.sampled_from([1, 3, 10_000])).map(lambda pair: (*pair[0], pair[1]))
    fuzz(drawn, 25 * scale, check)
