"""Exact dedup: normalisation, BLAKE2b-64 hashes and the first-occurrence representative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from synthvlm.steps.dedup import DedupStep, normalize, text_hashes

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello,  World!", "hello world"),
        ("  A dog\u2019s\tball. \n", "a dogs ball"),  # RIGHT SINGLE QUOTATION MARK is Pf
        ("Straße", "strasse"),  # casefold, not lower
        ("«Wait» — (now)!", "wait now"),  # Pi, Pf, Pd, Ps, Pe, Po all go; the dash leaves a double space
        ("1 + 2 = 3 $", "1 + 2 = 3 $"),  # math and currency symbols are S*, not P*: kept
        ("a\u00a0\u3000b", "a b"),  # Unicode whitespace runs collapse
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_text_hashes_exact() -> None:
    hashes = text_hashes(["Hello,  World!", "hello world", "Straße", ""])
    assert hashes.dtype == np.uint64
    # blake2b(b"hello world", digest_size=8) = 87 86 33 aa 32 a3 b1 50, read little-endian
    assert hashes.tolist() == [0x50B1A332AA338687, 0x50B1A332AA338687, 0xE44082330C6DB62A, 0xB4B2797457A0A6E4]
    assert text_hashes([]).tolist() == []


def _kept(captions: list[str]) -> list[bool]:
    """The exact-dedup plan's keep flags for one shard of these captions."""
    table = pa.table({"id": [f"c{i}" for i in range(len(captions))], "text_hash": text_hashes(captions)})
    return DedupStep().plan([table])[0].column("keep").to_pylist()


def test_duplicates_differing_in_case_and_punctuation() -> None:
    captions = ["A dog runs.", "a dog runs", "A cat.", "A  DOG, runs!", "a cat"]
    assert _kept(captions) == [True, False, True, False, False]


def test_flickr8k_unique_count() -> None:
    path = DATA / "flickr8k" / "Flickr8k.token.txt"
    if not path.exists():
        pytest.skip("shared/data/flickr8k is absent")
    lines = path.read_text(encoding="utf-8").splitlines()
    captions = [line.split("\t", 1)[1] if "\t" in line else line.split(None, 1)[1] for line in lines]
    # 40,460 captions, 332 of them repeat an earlier one after normalisation
    assert sum(_kept(captions)) == 40128
