"""Exact caption dedup: captions equal after light normalisation share a 64-bit hash; the first one stays."""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from collections.abc import Sequence
from functools import cache

import numpy as np

_WHITESPACE = re.compile(r"\s+")


@cache
def _punctuation_table() -> dict[int, None]:
    """``str.translate`` table deleting every code point of Unicode category P* (Pc Pd Pe Pf Pi Po Ps)."""
    return {c: None for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("P")}


def normalize(text: str) -> str:
    """Casefold, drop punctuation, collapse whitespace: captions differing only so count as duplicates."""
    return _WHITESPACE.sub(" ", text.casefold().translate(_punctuation_table())).strip()


def text_hashes(captions: Sequence[str]) -> np.ndarray:
    """uint64 per caption: the little-endian first 8 bytes of BLAKE2b-64 of its normalised UTF-8 text."""
    digests = b"".join(hashlib.blake2b(normalize(t).encode(), digest_size=8).digest() for t in captions)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def first_occurrence_mask(hashes: np.ndarray) -> np.ndarray:
    """True where a hash first appears in array order, so the kept representative is the first in the pool."""
    mask = np.zeros(hashes.shape[0], dtype=bool)
    mask[np.unique(hashes, return_index=True)[1]] = True
    return mask
