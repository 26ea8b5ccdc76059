"""Stable ids: exact outputs for awkward source ids, long ids, content hashes and collisions."""

from __future__ import annotations

import hashlib
import re

import pytest

from synthvlm.core.ids import IdAssigner, content_id, safe_id

SAFE = re.compile(r"[A-Za-z0-9_-]{1,100}")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc-DEF_123", "abc-DEF_123"),
        ("a/b\\c", "a_b_c"),
        ("../etc/passwd", "___etc_passwd"),
        ("..", "__"),
        ("a.b", "a_b"),
        ("café-☕_1", "caf_-__1"),
        ("tab\there\x00nul", "tab_here_nul"),
        ("1000268201_693b08cb0e.jpg#0", "1000268201_693b08cb0e_jpg_0"),
        ("221865", "221865"),
        ("x" * 100, "x" * 100),
    ],
)
def test_safe_id(raw: str, expected: str) -> None:
    assert safe_id(raw) == expected


def test_safe_id_long_and_empty() -> None:
    long = "x" * 150
    assert safe_id(long) == "x" * 83 + "-2f9803f9379b559a"
    assert "2f9803f9379b559a" == hashlib.blake2b(long.encode(), digest_size=8).hexdigest()
    assert len(safe_id("x" * 101)) == 100
    # Two long ids with the same safe prefix still differ: the hash is of the raw id.
    assert safe_id("é" * 120) != safe_id("è" * 120)
    assert safe_id("") == "he4a6a0577479b2b4" == content_id("")


def test_content_id() -> None:
    assert content_id("A dog.") == "h7d0f445677ea9430"
    assert content_id("A dog.") == "h" + hashlib.blake2b(b"A dog.", digest_size=8).hexdigest()
    assert content_id("\ud800") == "h" + hashlib.blake2b(b"\xed\xa0\x80", digest_size=8).hexdigest()


def test_assigner_collisions_are_deterministic() -> None:
    calls = [
        ("x", "a"),
        ("x", "b"),
        ("x", "c"),
        ("x-dup2", "d"),
        (None, "A dog."),
        (None, "A dog."),
        ("a/b", "e"),
        ("a_b", "f"),
        ("y" * 150, "g"),
        ("y" * 150, "h"),
        ("", "i"),
        (None, ""),
    ]
    expected = [
        "x",
        "x-dup2",
        "x-dup3",
        "x-dup2-dup2",
        "h7d0f445677ea9430",
        "h7d0f445677ea9430-dup2",
        "a_b",
        "a_b-dup2",
        "y" * 83 + "-86adac6fe1875f52",
        "y" * 83 + "-86adac6fe18-dup2",
        "he4a6a0577479b2b4",
        "he4a6a0577479b2b4-dup2",
    ]
    for _ in range(2):  # a fresh assigner over the same pool gives the same ids
        assigner = IdAssigner()
        ids = [assigner.assign(source_id=source, caption=caption) for source, caption in calls]
        assert ids == expected
        assert assigner.duplicates == 7
        assert all(SAFE.fullmatch(i) for i in ids)


def test_assigner_many_copies() -> None:
    assigner = IdAssigner()
    ids = [assigner.assign(source_id="same", caption="c") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert ids[:3] == ["same", "same-dup2", "same-dup3"]
    assert ids[-1] == "same-dup1000"
    assert assigner.duplicates == 999
