"""Readers: every entry of every format becomes exactly one Record or BadRecord, with exact values."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthvlm.readers import (
    FORMATS,
    REASONS,
    BadRecord,
    Record,
    UnreadableFileError,
    detect_format,
    expand_inputs,
    read,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def outcome(path: Path, fmt: str = "auto", **kwargs: int) -> list[tuple[int, str]]:
    """(source_index, reason) per item, "ok" for Records."""
    return [
        (item.source_index, "ok" if isinstance(item, Record) else item.reason)
        for item in read(str(path), fmt=fmt, **kwargs)
    ]


def records(path: Path, fmt: str = "auto") -> list[Record]:
    return [item for item in read(str(path), fmt=fmt) if isinstance(item, Record)]


def bads(path: Path, fmt: str = "auto") -> list[BadRecord]:
    return [item for item in read(str(path), fmt=fmt) if isinstance(item, BadRecord)]


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_registry_and_reasons() -> None:
    assert list(FORMATS) == ["json", "jsonl", "parquet", "csv", "tsv", "txt", "coco", "flickr8k", "llava"]
    assert sorted(REASONS) == sorted(
        [
            "bad_json",
            "bad_utf8",
            "bad_csv",
            "missing_field",
            "not_a_string",
            "empty_caption",
            "too_long",
            "control_chars",
            "image_token",
            "truncated_file",
            "bad_record",
        ]
    )


def test_unknown_format_name_lists_valid_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", "x\n")
    with pytest.raises(ValueError) as info:
        read(str(path), fmt="yaml")
    assert str(info.value) == (
        "unknown caption format 'yaml'; valid: auto, json, jsonl, parquet, csv, tsv, txt, coco, "
        "flickr8k, llava"
    )


# ------------------------------------------------------------------------------------------------ txt


def test_txt_every_case(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbf  hello \t world \r\n"  # 1 BOM stripped, CRLF, whitespace collapsed
        b"\r\n"  # 2 empty line (CRLF) -> empty_caption
        b"   \n"  # 3 whitespace only
        b"a\x00b\n"  # 4 NUL
        b"bad \xff byte\n"  # 5 invalid UTF-8
        b"x\x7fy\n"  # 6 DEL
        b"z\xc2\x85z\n"  # 7 C1 control U+0085
        b"v\x0bw\n"  # 8 vertical tab is a control char, not whitespace
        b"caf\xc3\xa9 \xe2\x80\x83 ok\n"  # 9 unicode text, em space collapsed
        b"0123456789A\n"  # 10 11 chars > limit 10
        b"0123456789\n"  # 11 exactly the limit
        b"last line without newline"  # 12 (cut last line is still a line)
    )
    path = write(tmp_path, "c.txt", data)
    assert outcome(path, max_caption_chars=30) == [
        (1, "ok"),
        (2, "empty_caption"),
        (3, "empty_caption"),
        (4, "control_chars"),
        (5, "bad_utf8"),
        (6, "control_chars"),
        (7, "control_chars"),
        (8, "control_chars"),
        (9, "ok"),
        (10, "ok"),
        (11, "ok"),
        (12, "ok"),
    ]
    assert outcome(path, max_caption_chars=10)[9:11] == [(10, "too_long"), (11, "ok")]
    items = list(read(str(path), max_caption_chars=30))
    assert items[0] == Record("hello world", str(path), 1, None, None)
    assert items[8] == Record("café ok", str(path), 9, None, None)
    assert items[3] == BadRecord(
        str(path), 4, "control_chars", "caption contains control character U+0000 at character 1", "a\x00b"
    )
    assert items[4] == BadRecord(
        str(path), 5, "bad_utf8", "line is not valid UTF-8 (byte 0xff at offset 4)", "bad \ufffd byte"
    )
    assert items[6].detail == "caption contains control character U+0085 at character 1"
    assert list(read(str(path), max_caption_chars=10))[9] == BadRecord(
        str(path),
        10,
        "too_long",
        "caption has 11 characters after whitespace collapsing; the limit is 10",
        "0123456789A",
    )


def test_txt_line_counting(tmp_path: Path) -> None:
    # The final terminator ends the last line; one more newline is an (empty) line of its own.
    assert outcome(write(tmp_path, "a.txt", "a\nb\n")) == [(1, "ok"), (2, "ok")]
    assert outcome(write(tmp_path, "b.txt", "a\nb\n\n")) == [(1, "ok"), (2, "ok"), (3, "empty_caption")]
    assert outcome(write(tmp_path, "c.txt", "a\n\nb")) == [(1, "ok"), (2, "empty_caption"), (3, "ok")]
    assert outcome(write(tmp_path, "d.txt", "")) == []
    assert outcome(write(tmp_path, "e.txt", "\n")) == [(1, "empty_caption")]


def test_too_long_caption_is_cut_in_bad_record(tmp_path: Path) -> None:
    path = write(tmp_path, "long.txt", "w " * 1500 + "\n")
    (item,) = read(str(path), max_caption_chars=2000)
    assert item.reason == "too_long"
    assert item.detail == "caption has 2999 characters after whitespace collapsing; the limit is 2000"
    assert item.caption == ("w " * 500)[:1000]


def test_captions_with_trainer_image_tokens_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tokens.jsonl",
        "".join(
            json.dumps({"id": i, "caption": c}) + "\n"
            for i, c in enumerate(
                ["a dog <image> on grass", "a <im_start> cat", "a < b and <images>", "plain"]
            )
        ),
    )
    items = list(read(str(path)))
    assert [(type(r).__name__, getattr(r, "reason", None), getattr(r, "detail", None)) for r in items] == [
        (
            "BadRecord",
            "image_token",
            "caption contains <image>, which LLaVA's trainer turns into image tokens",
        ),
        (
            "BadRecord",
            "image_token",
            "caption contains <im_start>, which LLaVA's trainer turns into image tokens",
        ),
        ("Record", None, None),  # "<images>" is not LLaVA's token
        ("Record", None, None),
    ]
    assert items[0].caption == "a dog <image> on grass"  # kept in the rejected row


# ------------------------------------------------------------------------------------------------ jsonl


def test_jsonl_every_case(tmp_path: Path) -> None:
    lines = [
        b'{"id": 1, "caption": " a  b\\n c ", "image": "x.jpg"}',  # 1
        b'{"text": "t", "id": "k", "url": "http://u/1.jpg"}',  # 2 text key, url image ref
        b"",  # 3 empty line
        b"{not json",  # 4
        b"[1, 2]",  # 5 not an object
        b'{"id": "z"}',  # 6 no caption
        b'{"caption": 5}',  # 7 number not coerced
        b'{"caption": null, "text": "t"}',  # 8 caption wins over text, null is missing
        b'{"caption": " \\t "}',  # 9
        b'{"caption": "a\\u0000b"}',  # 10 NUL via escape
        b'{"caption": "\\ud800x"}',  # 11 lone surrogate escape
        b'{"caption": "ok \xff"}',  # 12 raw invalid byte
        b'{"caption": "0123456789A"}',  # 13 too long for limit 10
        b'{"id": 1.5, "caption": "a"}',  # 14 float id
        b'{"caption": "a", "image": 3}',  # 15 non-string image
        b'{"caption": ["a"]}',  # 16 list caption
        b'{"id": "", "caption": "e", "image_path": "p.png", "image": null}',  # 17 empty id means none
        b'{"caption": "cut',  # 18 truncated last line
    ]
    path = write(tmp_path, "x.jsonl", b"\xef\xbb\xbf" + b"\r\n".join(lines))
    assert outcome(path, max_caption_chars=10) == [
        (1, "ok"),
        (2, "ok"),
        (3, "bad_json"),
        (4, "bad_json"),
        (5, "bad_record"),
        (6, "missing_field"),
        (7, "not_a_string"),
        (8, "missing_field"),
        (9, "empty_caption"),
        (10, "control_chars"),
        (11, "bad_utf8"),
        (12, "bad_utf8"),
        (13, "too_long"),
        (14, "bad_record"),
        (15, "bad_record"),
        (16, "not_a_string"),
        (17, "ok"),
        (18, "bad_json"),
    ]
    items = list(read(str(path), max_caption_chars=10))
    p = str(path)
    assert items[0] == Record("a b c", p, 1, "1", "x.jpg")
    assert items[1] == Record("t", p, 2, "k", "http://u/1.jpg")
    assert items[16] == Record("e", p, 17, None, "p.png")
    assert items[2] == BadRecord(p, 3, "bad_json", "empty line", "")
    assert items[3] == BadRecord(
        p,
        4,
        "bad_json",
        "invalid JSON (Expecting property name enclosed in double quotes, column 2)",
        "{not json",
    )
    assert items[4] == BadRecord(p, 5, "bad_record", "record is a list ([1, 2]), not an object")
    assert items[5] == BadRecord(p, 6, "missing_field", "record has no caption or text field", None, "z")
    assert items[6] == BadRecord(p, 7, "not_a_string", "caption is a int (5), not a string")
    assert items[7] == BadRecord(p, 8, "missing_field", "caption is null")
    assert items[10] == BadRecord(
        p, 11, "bad_utf8", "caption has bytes that are not valid UTF-8 (at character 0)", "\ufffdx"
    )
    assert items[13] == BadRecord(p, 14, "bad_record", "id is a float (1.5), not a string or integer", "a")
    assert items[14] == BadRecord(p, 15, "bad_record", "image reference is a int (3), not a string", "a")
    assert len(items) == len(lines)


def test_jsonl_trailing_newline_is_not_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "y.jsonl", '{"caption": "a"}\n{"caption": "b"}\n')
    assert outcome(path) == [(1, "ok"), (2, "ok")]
    path = write(tmp_path, "z.jsonl", '{"caption": "a"}\n\n')
    assert outcome(path) == [(1, "ok"), (2, "bad_json")]


# ------------------------------------------------------------------------------------------------ json list


def test_json_list_every_case(tmp_path: Path) -> None:
    elements = [
        '{"id": "a/b", "caption": "first", "file_name": "f.jpg"}',
        '"just a string"',
        '{"caption": 3.5}',
        '{"text": "second"}',
        '{"caption": "bad \udcff byte"}',  # placeholder, replaced by a raw byte below
        '{"caption": ""}',
        '{"id": 7, "caption": "x\\u001fy"}',
        "{}",
    ]
    text = "\ufeff[\r\n " + ",\r\n ".join(elements) + "\r\n]\r\n"
    data = text.encode("utf-8", "surrogateescape")
    path = write(tmp_path, "l.json", data)
    assert detect_format(str(path)) == "json"
    assert outcome(path) == [
        (1, "ok"),
        (2, "bad_record"),
        (3, "not_a_string"),
        (4, "ok"),
        (5, "bad_utf8"),
        (6, "empty_caption"),
        (7, "control_chars"),
        (8, "missing_field"),
    ]
    items = list(read(str(path)))
    assert items[0] == Record("first", str(path), 1, "a/b", "f.jpg")
    assert items[4] == BadRecord(
        str(path),
        5,
        "bad_utf8",
        "caption has bytes that are not valid UTF-8 (at character 4)",
        "bad \ufffd byte",
    )
    assert items[6].source_id == "7"
    assert outcome(write(tmp_path, "e.json", "[]")) == []
    assert outcome(write(tmp_path, "e2.json", " [ ] \n")) == []


def test_json_list_truncated_and_damaged(tmp_path: Path) -> None:
    good = '[{"caption": "a"}, {"caption": "b"}, '
    cases = {
        good + '{"caption": "c': [(1, "ok"), (2, "ok"), (3, "truncated_file")],  # cut inside a string
        good + '{"capt': [(1, "ok"), (2, "ok"), (3, "truncated_file")],
        good: [(1, "ok"), (2, "ok"), (3, "truncated_file")],  # cut after a comma
        '[{"caption": "a"}, {"caption": "b"}': [(1, "ok"), (2, "ok"), (3, "truncated_file")],  # no "]"
        "[": [(1, "truncated_file")],
        good + '{oops}, {"caption": "d"}]': [(1, "ok"), (2, "ok"), (3, "bad_json")],
        '[{"caption": "a"} {"caption": "b"}]': [(1, "ok"), (2, "bad_json")],
        '[{"caption": "a"}] trailing': [(1, "ok"), (2, "bad_json")],
        '[{"caption": "a"},]': [(1, "ok"), (2, "bad_json")],
    }
    for number, (text, expected) in enumerate(cases.items()):
        path = write(tmp_path, f"t{number}.json", text)
        assert outcome(path, "json") == expected, text
    path = write(tmp_path, "cut.json", good + '{"caption": "c')
    assert bads(path)[0].detail == "file ends inside element 3, after 2 complete elements"
    path = write(tmp_path, "cut2.json", '[{"caption": "a"}')
    assert bads(path)[0].detail == "file ends after element 1 without closing ']'"


def test_json_unreadable(tmp_path: Path) -> None:
    cases = {
        "not json at all": "not valid JSON (Expecting value, line 1 column 1); expected a list of "
        '{"caption": ...} objects',
        '{"a": 1}': 'the JSON document is a dict; expected a list of {"caption": ...} objects',
        "": "file is empty",
        "  \n": "file is empty",
    }
    for number, (text, message) in enumerate(cases.items()):
        path = write(tmp_path, f"u{number}.json", text)
        with pytest.raises(UnreadableFileError) as info:
            read(str(path), fmt="json")
        assert str(info.value) == f"{path}: {message}"
    with pytest.raises(UnreadableFileError) as info:
        read(str(tmp_path / "missing.json"), fmt="json")
    assert str(info.value) == f"{tmp_path / 'missing.json'}: cannot open (No such file or directory)"


# ------------------------------------------------------------------------------------------------ coco


def coco_doc() -> dict:
    return {
        "info": {},
        "images": [{"id": 10, "file_name": "000010.jpg"}, {"id": 11, "file_name": "000011.jpg"}],
        "annotations": [
            {"image_id": 10, "id": 100, "caption": "A cat\non a mat. "},
            {"image_id": 11, "id": 101, "caption": "A dog."},
            {"image_id": 99, "id": 102, "caption": "Unknown image."},
            {"image_id": 10, "id": 103},
            {"image_id": 10, "id": 104, "caption": 12},
            "bad",
            {"image_id": 11, "id": 105, "caption": "\t"},
        ],
    }


def test_coco(tmp_path: Path) -> None:
    path = write(tmp_path, "captions.json", json.dumps(coco_doc()))
    assert detect_format(str(path)) == "coco"
    p = str(path)
    assert list(read(p)) == [
        Record("A cat on a mat.", p, 1, "100", "000010.jpg"),
        Record("A dog.", p, 2, "101", "000011.jpg"),
        Record("Unknown image.", p, 3, "102", None),
        BadRecord(p, 4, "missing_field", "record has no caption or text field", None, "103"),
        BadRecord(p, 5, "not_a_string", "caption is a int (12), not a string", None, "104"),
        BadRecord(p, 6, "bad_record", "annotation is a str, not an object"),
        BadRecord(p, 7, "empty_caption", "caption is empty or only whitespace", "\t", "105"),
    ]


def test_coco_unreadable(tmp_path: Path) -> None:
    expected = 'expected a COCO captions object with "images" and "annotations" lists'
    no_annotations = {"images": []}
    bad_image = {"images": [{"id": 1}], "annotations": []}
    cases = {
        json.dumps(no_annotations): f'no "annotations" list; {expected}',
        json.dumps(bad_image): 'images entry 1 has no "id" and "file_name"',
        json.dumps(coco_doc())[:50]: "not valid JSON (Unterminated string starting at, line 1 column 49); "
        + expected,
        "[1]": f"the JSON document is a list; {expected}",
        json.dumps({"images": [{"id": [1], "file_name": "a.jpg"}], "annotations": []}): "images entry 1 has "
        "an id of type list; expected an integer or string",
        '{"a":' * 100_000 + "1" + "}" * 100_000: "JSON nested deeper than the parser's recursion limit; "
        + expected,
    }
    for number, (text, message) in enumerate(cases.items()):
        path = write(tmp_path, f"c{number}.json", text)
        with pytest.raises(UnreadableFileError) as info:
            read(str(path), fmt="coco")
        assert str(info.value) == f"{path}: {message}"
    # An object-shaped .json can only be COCO, so auto-detection routes it there and the reader says why not.
    path = write(tmp_path, "obj.json", json.dumps(no_annotations))
    assert detect_format(str(path)) == "coco"
    with pytest.raises(UnreadableFileError, match='no "annotations" list'):
        read(str(path))


# ------------------------------------------------------------------------------------------------ flickr8k


def test_flickr8k(tmp_path: Path) -> None:
    data = (
        b"1000_a.jpg#0\tA child  climbing .\r\n"  # 1
        b"1000_a.jpg#1 A space instead of a tab .\n"  # 2 (as in the published file)
        b"2258_b.jpg.1#0\tpeople waiting\n"  # 3 odd image name, kept as given
        b"1000_a.jpg#2\t\n"  # 4 key, empty caption
        b"1000_a.jpg#3\n"  # 5 key, no caption
        b"\n"  # 6 blank
        b"no key here\n"  # 7
        b"1000_a.jpg#4\tnul\x00here\n"  # 8
    ) + b"1000_a.jpg#5\tbad \xfe\n"  # 9
    path = write(tmp_path, "Flickr8k.token.txt", data)
    assert detect_format(str(path)) == "flickr8k"
    p = str(path)
    items = list(read(p))
    assert [(i.source_index, "ok" if isinstance(i, Record) else i.reason) for i in items] == [
        (1, "ok"),
        (2, "ok"),
        (3, "ok"),
        (4, "empty_caption"),
        (5, "missing_field"),
        (6, "bad_record"),
        (7, "bad_record"),
        (8, "control_chars"),
        (9, "bad_utf8"),
    ]
    assert items[0] == Record("A child climbing .", p, 1, "1000_a.jpg#0", "1000_a.jpg")
    assert items[1] == Record("A space instead of a tab .", p, 2, "1000_a.jpg#1", "1000_a.jpg")
    assert items[2] == Record("people waiting", p, 3, "2258_b.jpg.1#0", "2258_b.jpg.1")
    assert items[3].source_id == "1000_a.jpg#2"
    assert items[4] == BadRecord(
        p, 5, "missing_field", "line has an image key but no caption", None, "1000_a.jpg#3"
    )
    assert items[6] == BadRecord(
        p, 7, "bad_record", "line does not look like <image>#<n><TAB><caption>", "no key here"
    )


# ------------------------------------------------------------------------------------------------ llava


def test_llava(tmp_path: Path) -> None:
    items = [
        {
            "id": "004539375",
            "image": "00453/004539375.jpg",
            "conversations": [
                {"from": "human", "value": "Describe the image.\n<image>"},
                {"from": "gpt", "value": "select luxury  furniture"},
                {"from": "gpt", "value": "second answer"},
            ],
        },
        {"id": 5, "image": "b.jpg", "conversations": [{"from": "human", "value": "hi"}]},
        {"id": "6", "image": "c.jpg"},
        {"id": "7", "conversations": "nope"},
        {"id": "8", "conversations": [{"from": "gpt", "value": None}]},
        {"id": "9", "conversations": [{"from": "gpt", "value": "no image"}]},
        [],
    ]
    path = write(tmp_path, "blip_laion_cc_sbu_558k.json", json.dumps(items))
    assert detect_format(str(path)) == "llava"
    p = str(path)
    assert list(read(p)) == [
        Record("select luxury furniture", p, 1, "004539375", "00453/004539375.jpg"),
        BadRecord(p, 2, "missing_field", "item has no gpt turn with a value", None, "5"),
        BadRecord(p, 3, "missing_field", "item has no gpt turn with a value", None, "6"),
        BadRecord(p, 4, "bad_record", "conversations is not a list of objects"),
        BadRecord(p, 5, "missing_field", "caption is null", None, "8"),
        Record("no image", p, 6, "9", None),
        BadRecord(p, 7, "bad_record", "item is a list, not an object"),
    ]
    # Truncated LLaVA files keep their complete items too.
    cut = write(tmp_path, "cut_llava.json", json.dumps(items[:2])[:-1] + ', {"id": "6", "ima')
    assert outcome(cut) == [(1, "ok"), (2, "missing_field"), (3, "truncated_file")]


# ------------------------------------------------------------------------------------------------ csv / tsv


def test_csv_every_case(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbfid,caption,image\r\n"
        b"1,A cat.,cat.jpg\r\n"  # 1
        b'2,"Multi\r\nline, quoted ""text""",\r\n'  # 2 quoted, embedded newline and comma; empty image
        b",no id,x.jpg\r\n"  # 3
        b"4,too,many,fields\r\n"  # 4
        b"\r\n"  # 5 blank row
        b"6,  ,a.jpg\r\n"  # 6
        b"7,bad \xff,a.jpg\r\n"  # 7
        b"8,ctl\x01,a.jpg\r\n"  # 8
        b"9\r\n"  # 9 too few fields
    )
    path = write(tmp_path, "caps.csv", data)
    assert detect_format(str(path)) == "csv"
    p = str(path)
    items = list(read(p))
    assert [(i.source_index, "ok" if isinstance(i, Record) else i.reason) for i in items] == [
        (1, "ok"),
        (2, "ok"),
        (3, "ok"),
        (4, "bad_csv"),
        (5, "empty_caption"),
        (6, "empty_caption"),
        (7, "bad_utf8"),
        (8, "control_chars"),
        (9, "bad_csv"),
    ]
    assert items[0] == Record("A cat.", p, 1, "1", "cat.jpg")
    assert items[1] == Record('Multi line, quoted "text"', p, 2, "2", None)
    assert items[2] == Record("no id", p, 3, None, "x.jpg")
    assert items[3] == BadRecord(
        p, 4, "bad_csv", "row has 4 fields, the header has 3", "4\ttoo\tmany\tfields"
    )
    assert items[6] == BadRecord(
        p, 7, "bad_utf8", "caption has bytes that are not valid UTF-8 (at character 4)", "bad \ufffd", "7"
    )


def test_tsv_and_text_column(tmp_path: Path) -> None:
    path = write(tmp_path, "caps.tsv", 'text\turl\nA "quoted" word\thttp://x/1.jpg\n"a\tb"\t\n')
    assert detect_format(str(path)) == "tsv"
    p = str(path)
    assert list(read(p)) == [
        Record('A "quoted" word', p, 1, None, "http://x/1.jpg"),
        Record("a b", p, 2, None, None),
    ]


def test_csv_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, "nocap.csv", "id,label\n1,x\n")
    with pytest.raises(UnreadableFileError) as info:
        read(str(path))
    assert str(info.value) == f"{path}: no caption or text column in the header (columns: id, label)"
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(UnreadableFileError) as info:
        read(str(path))
    assert str(info.value) == f"{path}: file is empty; expected a header row with a caption column"
    # Found by fuzzing: names with line breaks or undecodable bytes made the message several lines, or
    # unprintable (lone surrogates); such names are shown as Python literals.
    path = write(tmp_path, "odd.csv", b'id,"a\nb",\xff,\x0b\n1,2,3,4\n')
    with pytest.raises(UnreadableFileError) as info:
        read(str(path))
    assert str(info.value) == (
        f"{path}: no caption or text column in the header (columns: id, 'a\\nb', '\\udcff', '\\x0b')"
    )


def test_csv_stray_quote_costs_one_line(tmp_path: Path) -> None:
    never_closed = write(tmp_path, "a.csv", 'id,caption\n1,"a dog\n2,a cat\n3,a bird\n')
    p = str(never_closed)
    assert list(read(p)) == [
        BadRecord(
            p,
            1,
            "bad_csv",
            "row cannot be parsed (a quoted field is never closed); skipped its line",
            '1,"a dog',
        ),
        Record("a cat", p, 2, "2", None),
        Record("a bird", p, 3, "3", None),
    ]
    closed_later = write(
        tmp_path, "b.tsv", 'id\tcaption\n1\t"ok\nmulti"\n2\t"stray\n3\tfine\n4\tx"\ty\n5\tz\n'
    )
    p = str(closed_later)
    assert list(read(p)) == [
        Record("ok multi", p, 1, "1", None),
        BadRecord(
            p,
            2,
            "bad_csv",
            "row has 3 fields across 3 lines, the header has 2; skipped its first line",
            '2\t"stray',
        ),
        Record("fine", p, 3, "3", None),
        BadRecord(p, 4, "bad_csv", "row has 3 fields, the header has 2", '4\tx"\ty'),
        Record("z", p, 5, "5", None),
    ]


def test_json_nested_too_deep_is_a_bad_record(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    lines = write(tmp_path, "deep.jsonl", f'{{"caption": "a cat"}}\n{deep}\n{{"caption": "a dog"}}\n')
    assert outcome(lines) == [(1, "ok"), (2, "bad_json"), (3, "ok")]
    assert bads(lines)[0].detail == "JSON nested deeper than the parser's recursion limit"
    listed = write(tmp_path, "deep.json", f'[{{"caption": "a cat"}}, {deep}, {{"caption": "a dog"}}]')
    assert outcome(listed) == [(1, "ok"), (2, "bad_json")]
    assert bads(listed)[0].detail == (
        "element 2: JSON nested deeper than the parser's recursion limit; the rest of the file was not read"
    )


def test_json_integer_too_long_for_python_is_bad_json(tmp_path: Path) -> None:
    # Found by fuzzing: int() refuses more than 4300 digits with a plain ValueError, which was a traceback.
    big = "1" * 5000
    detail = "JSON integer longer than Python's limit of 4300 digits"
    lines = write(tmp_path, "big.jsonl", f'{{"caption": "a"}}\n{{"caption": {big}}}\n{{"caption": "b"}}\n')
    p = str(lines)
    assert list(read(p)) == [
        Record("a", p, 1, None, None),
        BadRecord(p, 2, "bad_json", detail, f'{{"caption": {big}}}'[:1000]),
        Record("b", p, 3, None, None),
    ]
    listed = write(tmp_path, "big.json", f'[{{"caption": "a"}}, {big}, {{"caption": "b"}}]')
    p = str(listed)
    assert list(read(p)) == [
        Record("a", p, 1, None, None),
        BadRecord(p, 2, "bad_json", f"element 2: {detail}; the rest of the file was not read"),
    ]
    first = write(tmp_path, "first.json", f"[{big}]")
    assert detect_format(str(first)) == "json"
    coco = write(tmp_path, "coco.json", f'{{"images": [], "annotations": [], "n": {big}}}')
    with pytest.raises(UnreadableFileError) as info:
        read(str(coco))
    assert str(info.value) == (
        f'{coco}: {detail}; expected a COCO captions object with "images" and "annotations" lists'
    )


def test_json_list_after_other_than_json_whitespace_is_unreadable(tmp_path: Path) -> None:
    # Found by fuzzing: str.lstrip() stepped over "\xa0" (not JSON whitespace), and the reader then took
    # the whole list for its first element (a bad_record, then a truncated_file).
    for number, space in enumerate(["\xa0", "\x1c", "\u3000"]):
        path = write(tmp_path, f"s{number}.json", space + '[{"caption": "a"}]')
        for fmt in ("json", "llava"):
            with pytest.raises(UnreadableFileError) as info:
                read(str(path), fmt=fmt)
            assert str(info.value).startswith(f"{path}: not valid JSON (Expecting value, line 1 column 1); ")
    assert outcome(write(tmp_path, "ok.json", ' \r\n\t[{"caption": "a"}]')) == [(1, "ok")]


# ------------------------------------------------------------------------------------------------ parquet


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "caps.parquet"
    table = pa.table(
        {
            "id": pa.array([1, 2, None, 4, 5], pa.int64()),
            "caption": ["A  cat.", None, "no id", "", "x\x00"],
            "image_path": ["a.jpg", None, "c.jpg", None, None],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    assert detect_format(str(path)) == "parquet"
    p = str(path)
    assert list(read(p)) == [
        Record("A cat.", p, 1, "1", "a.jpg"),
        BadRecord(p, 2, "missing_field", "caption is null", None, "2"),
        Record("no id", p, 3, None, "c.jpg"),
        BadRecord(p, 4, "empty_caption", "caption is empty or only whitespace", "", "4"),
        BadRecord(
            p, 5, "control_chars", "caption contains control character U+0000 at character 1", "x\x00", "5"
        ),
    ]
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1.5, 2.0]}), numbers)
    assert outcome(numbers) == [(1, "not_a_string"), (2, "not_a_string")]


def test_parquet_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, "fake.parquet", "this is not parquet")
    with pytest.raises(UnreadableFileError) as info:
        read(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable Parquet file (")
    assert "\n" not in message
    nocap = tmp_path / "nocap.parquet"
    pq.write_table(pa.table({"id": [1], "label": ["x"]}), nocap)
    with pytest.raises(UnreadableFileError) as info:
        read(str(nocap))
    assert str(info.value) == f"{nocap}: no caption or text column (columns: id, label)"
    pq.write_table(pa.table({"id": [1], "a\nb": ["x"]}), nocap)
    with pytest.raises(UnreadableFileError) as info:
        read(str(nocap))
    assert str(info.value) == f"{nocap}: no caption or text column (columns: id, 'a\\nb')"


def test_parquet_two_columns_of_a_picked_name_are_unreadable(tmp_path: Path) -> None:
    # Found by fuzzing: pyarrow's KeyError for the ambiguous column was a traceback.
    path = tmp_path / "dup.parquet"
    names = ["caption", "image", "caption"]
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["x.jpg"]), pa.array(["b"])], names), path)
    with pytest.raises(UnreadableFileError) as info:
        read(str(path))
    assert str(info.value) == f"{path}: 2 columns are named 'caption'; expected one"
    # A duplicate of a column the reader does not use is no problem.
    names = ["caption", "url", "note", "note"]
    columns = [pa.array(["a"]), pa.array(["x"]), pa.array(["y"]), pa.array(["z"])]
    pq.write_table(pa.Table.from_arrays(columns, names), path)
    assert list(read(str(path))) == [Record("a", str(path), 1, None, "x")]


def test_parquet_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    # Found by fuzzing: pyarrow does not check UTF-8 on read, and its UnicodeDecodeError was a traceback.
    def strings(*values: bytes) -> pa.Array:
        offsets = [0]
        for value in values:
            offsets.append(offsets[-1] + len(value))
        buffers = [None, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(b"".join(values))]
        return pa.Array.from_buffers(pa.string(), len(values), buffers)

    cells = tmp_path / "cells.parquet"
    pq.write_table(
        pa.table({"id": strings(b"1", b"2", b"\xe9"), "caption": strings(b"ok", b"\xff!", b"x")}), cells
    )
    p = str(cells)
    assert list(read(p)) == [
        Record("ok", p, 1, "1", None),
        BadRecord(
            p, 2, "bad_utf8", "caption has bytes that are not valid UTF-8 (at character 0)", "\ufffd!", "2"
        ),
        BadRecord(p, 3, "bad_utf8", "id has bytes that are not valid UTF-8", "x", "\ufffd"),
    ]
    name = tmp_path / "name.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"caption": ["a"], "zzzzq": ["b"]}), sink)
    name.write_bytes(sink.getvalue().to_pybytes().replace(b"zzzzq", b"\xffzzzq"))
    with pytest.raises(UnreadableFileError) as info:
        read(str(name))
    assert str(info.value) == (
        f"{name}: not a readable Parquet file ('utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte)"
    )


# ------------------------------------------------------------------------------------------------ detection


def test_detect_format(tmp_path: Path) -> None:
    cases = {
        "a.jsonl": ("{}", "jsonl"),
        "a.NDJSON": ("{}", "jsonl"),
        "a.CSV": ("caption\n", "csv"),
        "plain.txt": ("a photo.jpg#1 looks nice\nanother caption\n", "txt"),
        "flickr.txt": ("\ufeffx.jpg#0\tA dog .\nx.jpg#1\tA cat .\n", "flickr8k"),
        "list.json": ('[{"caption": "a"}]', "json"),
        "empty_list.json": ("[]", "json"),
        "junk.json": ("junk", "json"),
        "llava_big.json": ('[{"id": "1", "conversations": [{"value": "' + "x" * 70000, "llava"),
    }
    for name, (text, fmt) in cases.items():
        assert detect_format(str(write(tmp_path, name, text))) == fmt, name
    with pytest.raises(UnreadableFileError) as info:
        detect_format(str(write(tmp_path, "a.yaml", "x")))
    assert str(info.value) == (
        f"{tmp_path / 'a.yaml'}: unknown file extension '.yaml'; "
        "known: .csv, .json, .jsonl, .ndjson, .parquet, .tsv, .txt"
    )


# ------------------------------------------------------------------------------------------------ inputs


def test_expand_inputs(tmp_path: Path) -> None:
    for name in ["b.jsonl", "a.jsonl", "c.txt", "sub/d.jsonl"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    t = str(tmp_path)
    assert expand_inputs([f"{t}/c.txt", f"{t}/*.jsonl", f"{t}/a.jsonl", f"{t}/./c.txt"]) == [
        f"{t}/c.txt",
        f"{t}/a.jsonl",
        f"{t}/b.jsonl",
    ]
    assert expand_inputs([f"{t}/**/*.jsonl"]) == [f"{t}/a.jsonl", f"{t}/b.jsonl", f"{t}/sub/d.jsonl"]
    with pytest.raises(UnreadableFileError) as info:
        expand_inputs([f"{t}/*.parquet"])
    assert str(info.value) == f"{t}/*.parquet: no file matches this pattern"
    with pytest.raises(UnreadableFileError) as info:
        expand_inputs([f"{t}/nope.txt"])
    assert str(info.value) == f"{t}/nope.txt: no such file"
    with pytest.raises(UnreadableFileError) as info:
        expand_inputs([f"{t}/sub"])
    assert str(info.value) == f"{t}/sub: is a directory; pass a glob such as {t}/sub/*.jsonl"


# ------------------------------------------------------------------------------------------------ real data


def test_real_flickr8k() -> None:
    path = DATA / "flickr8k" / "Flickr8k.token.txt"
    if not path.exists():
        pytest.skip("shared/data/flickr8k is absent")
    assert detect_format(str(path)) == "flickr8k"
    items = list(read(str(path)))
    assert len(items) == 40460
    assert sum(isinstance(item, Record) for item in items) == 40460
    assert [item.source_index for item in items] == list(range(1, 40461))
    assert len({item.source_id for item in items}) == 40460
    assert items[6730].image_ref == "2258277193_586949ec62.jpg.1"


def test_real_coco() -> None:
    path = DATA / "coco-mini" / "captions_val2017.json"
    if not path.exists():
        pytest.skip("shared/data/coco-mini is absent")
    assert detect_format(str(path)) == "coco"
    items = list(read(str(path)))
    assert len(items) == 395
    assert sum(isinstance(item, Record) for item in items) == 395
    assert items[0] == Record(
        "A plane floating on top of a lake surrounded by mountains.",
        str(path),
        1,
        "221865",
        "000000205401.jpg",
    )
    assert len({item.image_ref for item in items}) == 79
