"""Rule-based caption filters whose statistics match Data-Juicer's operators of the same name, vectorised.

Each filter computes one float64 statistic per caption, defined exactly as the Data-Juicer (1.6) operator of
the same name defines it with ``tokenization=False``, and keeps a caption when ``min <= value <= max``
(Data-Juicer's default closed interval). ``docs/curation.md`` gives every definition.

Speed comes from working on all captions of a chunk at once: the captions become one NumPy array of code
points, character classes are table look-ups, counts per caption are differences of a cumulative sum, and
repetition is screened with 64-bit hashes of n-gram windows. Every filter also has a plain per-caption
reference (``_stat_one``); the vectorised path hands the rare captions it cannot settle exactly (a possible
repeat, a possible flagged word, non-ASCII text for the lower-cased word filters) to that reference, so the
result never depends on a hash being collision-free.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import numpy as np

# Data-Juicer's SPECIAL_CHARACTERS, as the code points a character-by-character test can match:
# string.punctuation + string.digits + string.whitespace, its list of other symbols (typographic quotes and
# dashes, C1 controls, unusual spaces, arrows, ...) and the single-code-point keys of emoji 2.2.0's
# EMOJI_DATA (the emoji version Data-Juicer pins). Its multi-code-point emoji keys can never equal one
# character, so they never count. Ranges are inclusive; a bare number is a single code point.
_SPECIAL_RANGES: tuple[int | tuple[int, int], ...] = (
    (0x9, 0xD),
    (0x20, 0x40),
    (0x5B, 0x60),
    (0x7B, 0x7E),
    (0x81, 0x85),
    (0x91, 0x93),
    (0x95, 0x99),
    (0x9C, 0x9D),
    (0xA1, 0xAB),
    (0xAD, 0xB4),
    (0xB7, 0xBF),
    0xD7,
    (0xF7, 0xF8),
    0x131,
    0x26A,
    (0x2BA, 0x2BC),
    0x2C8,
    0x2CC,
    0x2D0,
    0x2D8,
    0x2DA,
    0x2DC,
    0x3C0,
    0x413,
    0x60C,
    0x647,
    0x66A,
    0x66C,
    0x6E9,
    0x93E,
    0x940,
    0x947,
    0x94D,
    0x97D,
    0x9BE,
    0xE51,
    (0x2002, 0x2003),
    0x2005,
    (0x2008, 0x200B),
    (0x2010, 0x2011),
    (0x2013, 0x2016),
    (0x2018, 0x201A),
    (0x201C, 0x2020),
    0x2022,
    0x2024,
    0x2026,
    (0x202F, 0x2030),
    (0x2032, 0x2033),
    (0x2039, 0x203A),
    0x203C,
    0x203F,
    (0x2043, 0x2044),
    0x2049,
    0x20A8,
    0x20AA,
    0x20AC,
    0x2103,
    0x2122,
    0x2139,
    (0x2190, 0x2199),
    (0x21A9, 0x21AA),
    0x21D3,
    0x2206,
    0x2208,
    0x2212,
    0x221A,
    (0x221E, 0x221F),
    0x223C,
    0x2248,
    0x2256,
    (0x2264, 0x2265),
    0x2295,
    0x22C5,
    (0x231A, 0x231B),
    0x2328,
    0x23CF,
    (0x23E9, 0x23F3),
    (0x23F8, 0x23FA),
    0x24C2,
    0x2550,
    0x25A0,
    (0x25AA, 0x25AC),
    0x25B2,
    0x25B4,
    (0x25B6, 0x25B7),
    (0x25BA, 0x25BC),
    0x25C0,
    0x25C6,
    0x25CF,
    0x25E6,
    (0x25FB, 0x25FE),
    (0x2600, 0x2606),
    0x260E,
    0x2611,
    (0x2614, 0x2615),
    0x2618,
    0x261B,
    0x261D,
    0x2620,
    (0x2622, 0x2623),
    0x2626,
    0x262A,
    (0x262E, 0x262F),
    (0x2638, 0x263B),
    0x2640,
    0x2642,
    (0x2648, 0x2653),
    (0x265F, 0x2661),
    0x2663,
    (0x2665, 0x2666),
    0x2668,
    0x266B,
    0x267B,
    (0x267E, 0x267F),
    (0x2692, 0x2697),
    0x2699,
    (0x269B, 0x269C),
    (0x26A0, 0x26A1),
    0x26A7,
    (0x26AA, 0x26AB),
    (0x26B0, 0x26B1),
    (0x26BD, 0x26BE),
    (0x26C4, 0x26C5),
    0x26C8,
    (0x26CE, 0x26CF),
    0x26D1,
    (0x26D3, 0x26D4),
    (0x26E9, 0x26EA),
    (0x26F0, 0x26F5),
    (0x26F7, 0x26FA),
    0x26FD,
    0x2702,
    0x2705,
    (0x2708, 0x270D),
    0x270F,
    (0x2712, 0x2714),
    0x2716,
    0x271D,
    0x2721,
    0x2726,
    0x2728,
    0x2731,
    (0x2733, 0x2734),
    0x2744,
    0x2747,
    0x274C,
    0x274E,
    (0x2753, 0x2757),
    (0x2763, 0x2764),
    (0x2795, 0x2797),
    0x27A1,
    0x27A4,
    0x27A9,
    0x27B0,
    0x27BF,
    0x2800,
    (0x2934, 0x2935),
    (0x2B05, 0x2B07),
    (0x2B1B, 0x2B1C),
    0x2B50,
    0x2B55,
    (0x3000, 0x3002),
    (0x300A, 0x300D),
    (0x3010, 0x3011),
    0x3030,
    0x303D,
    0x309C,
    0x30B7,
    (0x30C3, 0x30C4),
    0x30F3,
    (0x30FB, 0x30FC),
    0x3297,
    0x3299,
    0x4E00,
    0x4E0A,
    0x58EB,
    (0xFD3E, 0xFD3F),
    0xFEFF,
    0xFF01,
    (0xFF08, 0xFF09),
    0xFF0C,
    0xFF0E,
    0xFF11,
    (0xFF1A, 0xFF1B),
    0xFF1F,
    0xFF3E,
    0xFF5E,
    (0xFFFC, 0xFFFD),
    0x1F004,
    0x1F0CF,
    (0x1F170, 0x1F171),
    (0x1F17E, 0x1F17F),
    0x1F18E,
    (0x1F191, 0x1F19A),
    (0x1F201, 0x1F202),
    0x1F21A,
    0x1F22F,
    (0x1F232, 0x1F23A),
    (0x1F250, 0x1F251),
    (0x1F300, 0x1F321),
    (0x1F324, 0x1F393),
    (0x1F396, 0x1F397),
    (0x1F399, 0x1F39B),
    (0x1F39E, 0x1F3F0),
    (0x1F3F3, 0x1F3F5),
    (0x1F3F7, 0x1F4FD),
    (0x1F4FF, 0x1F53D),
    (0x1F549, 0x1F54E),
    (0x1F550, 0x1F567),
    (0x1F56F, 0x1F570),
    (0x1F573, 0x1F57A),
    0x1F587,
    (0x1F58A, 0x1F58D),
    0x1F590,
    (0x1F595, 0x1F596),
    (0x1F5A4, 0x1F5A5),
    0x1F5A8,
    (0x1F5B1, 0x1F5B2),
    0x1F5BC,
    (0x1F5C2, 0x1F5C4),
    (0x1F5D1, 0x1F5D3),
    (0x1F5DC, 0x1F5DE),
    0x1F5E1,
    0x1F5E3,
    0x1F5E8,
    0x1F5EF,
    0x1F5F3,
    (0x1F5FA, 0x1F64F),
    (0x1F680, 0x1F6C5),
    (0x1F6CB, 0x1F6D2),
    (0x1F6D5, 0x1F6D7),
    (0x1F6DC, 0x1F6E5),
    0x1F6E9,
    (0x1F6EB, 0x1F6EC),
    0x1F6F0,
    (0x1F6F3, 0x1F6FC),
    (0x1F7E0, 0x1F7EB),
    0x1F7F0,
    (0x1F90C, 0x1F93A),
    (0x1F93C, 0x1F945),
    (0x1F947, 0x1F9FF),
    (0x1FA70, 0x1FA7C),
    (0x1FA80, 0x1FA88),
    (0x1FA90, 0x1FABD),
    (0x1FABF, 0x1FAC5),
    (0x1FACE, 0x1FADB),
    (0x1FAE0, 0x1FAE8),
    (0x1FAF0, 0x1FAF8),
)

_CHUNK_ROWS = 1 << 16
"""Captions per vectorised chunk: bounds memory, and lets a row index fit the top 16 bits of a sort key."""
_ROW_SHIFT = np.uint64(48)
_HASH_P = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
_HASH_Q = np.uint64(0xC2B2AE3D27D4EB4F)
_WORD_SPLIT = re.compile("[ \n\t]")  # Data-Juicer splits words on space, newline and tab only


@cache
def _special_table() -> np.ndarray:
    """Boolean look-up table over all code points: is this character in Data-Juicer's SPECIAL_CHARACTERS."""
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    for item in _SPECIAL_RANGES:
        lo, hi = item if isinstance(item, tuple) else (item, item)
        table[lo : hi + 1] = True
    return table


@cache
def _special_chars() -> str:
    """The same set as a string, for ``str.strip`` in the per-caption reference."""
    return "".join(map(chr, np.flatnonzero(_special_table()).tolist()))


@cache
def _alnum_table() -> np.ndarray:
    """Boolean look-up table of ``str.isalnum`` over all code points (this Python's Unicode database)."""
    return np.frombuffer(bytes(chr(c).isalnum() for c in range(sys.maxunicode + 1)), dtype=bool)


@cache
def flagged_words() -> frozenset[str]:
    """The packaged English flagged-word list (lower case, one word per line)."""
    text = resources.files("synthvlm").joinpath("data/flagged_words_en.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def dj_words(text: str, *, lower: bool) -> list[str]:
    """Words as Data-Juicer's non-tokenizer path makes them: split, optionally lower-case, strip specials."""
    words = [w for w in _WORD_SPLIT.split(text) if w]
    if lower:
        words = [w.lower() for w in words]
    specials = _special_chars()
    return [s for s in (w.strip(specials) for w in words) if s]


def _word_hash(word: str) -> int:
    """Polynomial hash of a word, equal to the vectorised word hash of the same lower-cased characters."""
    h = 0
    p = int(_HASH_P)
    for k, ch in enumerate(word):
        h = (h + (ord(ch) + 1) * pow(p, k, 1 << 64)) % (1 << 64)
    return h


class _Chunk:
    """The captions of one chunk as one code-point array, with per-caption offsets."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.n = len(texts)
        self.lengths = np.fromiter(map(len, texts), dtype=np.int64, count=self.n)
        self.offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.cp = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype="<u4")

    def per_row(self, mask: np.ndarray) -> np.ndarray:
        """How many characters of each caption the per-character mask marks."""
        cs = np.zeros(mask.size + 1, dtype=np.int64)
        np.cumsum(mask, out=cs[1:])
        return cs[self.offsets[1:]] - cs[self.offsets[:-1]]

    def ratio(self, mask: np.ndarray) -> np.ndarray:
        """Marked characters over all characters per caption; 0.0 for an empty caption, as Data-Juicer."""
        counts = self.per_row(mask)
        out = np.zeros(self.n, dtype=np.float64)
        nz = self.lengths > 0
        out[nz] = counts[nz] / self.lengths[nz]
        return out

    def non_ascii(self) -> np.ndarray:
        """Captions holding any non-ASCII character (their lower-casing is left to Python's ``str.lower``)."""
        return self.per_row(self.cp >= 128) > 0

    def row_of(self, positions: np.ndarray) -> np.ndarray:
        """Caption index of each character position."""
        return np.searchsorted(self.offsets, positions, side="right") - 1

    def words(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First and last character position and caption of every word left after stripping specials.

        A token is a maximal run of characters other than space/newline/tab inside one caption; it survives
        Data-Juicer's strip iff it holds a non-special character, and then spans from its first to its last
        non-special character.
        """
        cp = self.cp
        if cp.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        sep = (cp == 32) | (cp == 10) | (cp == 9)  # all three are special characters too
        starts_token = np.empty(cp.size, dtype=bool)
        starts_token[0] = True
        starts_token[1:] = sep[:-1]
        starts_token[self.offsets[:-1][self.lengths > 0]] = True
        starts_token &= ~sep
        token = np.cumsum(starts_token)
        kept = np.flatnonzero(~_special_table()[cp])
        if kept.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        kept_token = token[kept]
        new = np.empty(kept.size, dtype=bool)
        new[0] = True
        new[1:] = kept_token[1:] != kept_token[:-1]
        end = np.empty(kept.size, dtype=bool)
        end[-1] = True
        end[:-1] = new[1:]
        first, last = kept[new], kept[end]
        return first, last, self.row_of(first)

    def ascii_lower_word_hashes(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """``_word_hash`` of each word's ASCII-lower-cased characters, all at once via prefix sums."""
        val = self.cp.astype(np.uint64)
        val[(self.cp >= 65) & (self.cp <= 90)] += np.uint64(32)
        val += np.uint64(1)
        powers, inverse = _powers(val.size)
        prefix = np.zeros(val.size + 1, dtype=np.uint64)
        np.cumsum(val * powers, out=prefix[1:])
        return (prefix[last + 1] - prefix[first]) * inverse[first]


_POWERS: list[np.ndarray] = []


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """P**k and P**-k modulo 2**64 for k < size, computed once and reused across chunks."""
    if not _POWERS or _POWERS[0].size < size:
        grown = max(size, 1 << 20)
        powers = np.full(grown, _HASH_P, dtype=np.uint64)
        inverse = np.full(grown, np.uint64(pow(int(_HASH_P), -1, 1 << 64)), dtype=np.uint64)
        powers[0] = inverse[0] = 1
        _POWERS[:] = [np.cumprod(powers), np.cumprod(inverse)]
    return _POWERS[0][:size], _POWERS[1][:size]


def _rows_with_repeated_window(values: np.ndarray, rows: np.ndarray, n: int, n_rows: int) -> np.ndarray:
    """Captions where two windows of ``n`` consecutive values (inside the caption) hash alike.

    Equal windows always hash alike, so a caption not returned has no repeated n-gram; a returned one may
    (or its hash collided) and is settled exactly by the caller.
    """
    out = np.zeros(n_rows, dtype=bool)
    m = values.size - n + 1
    if m < 2:
        return out
    h = values[:m].copy()
    for j in range(1, n):
        h *= _HASH_Q
        h += values[j : j + m]
    inside = rows[:m] == rows[n - 1 :]
    key = (rows[:m][inside].astype(np.uint64) << _ROW_SHIFT) | (h[inside] >> np.uint64(16))
    key.sort()
    dup = key[1:] == key[:-1]
    out[(key[1:][dup] >> _ROW_SHIFT).astype(np.int64)] = True
    return out


class TextFilter(ABC):
    """A caption filter: one statistic per caption and a closed-interval keep rule, as in Data-Juicer."""

    name: ClassVar[str]

    def compute(self, captions: Sequence[str]) -> np.ndarray:
        """The float64 statistic of every caption, in order."""
        texts = list(captions)
        parts = [
            self._compute_chunk(_Chunk(texts[i : i + _CHUNK_ROWS])) for i in range(0, len(texts), _CHUNK_ROWS)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)

    def keep(self, values: np.ndarray) -> np.ndarray:
        """True where ``low <= value <= high`` (Data-Juicer's default closed interval on both ends)."""
        low, high = self._bounds()
        return (values >= low) & (values <= high)

    @abstractmethod
    def _compute_chunk(self, chunk: _Chunk) -> np.ndarray: ...

    @abstractmethod
    def _stat_one(self, text: str) -> float:
        """The statistic of one caption, written plainly: the reference the vectorised path must equal."""

    @abstractmethod
    def _bounds(self) -> tuple[float, float]: ...

    def _settle(self, chunk: _Chunk, out: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Fill in the exact statistic of the flagged rows with the per-caption reference."""
        for i in np.flatnonzero(rows).tolist():
            out[i] = self._stat_one(chunk.texts[i])
        return out

    def _check(self, *, low: str, high: str, positive: tuple[str, ...] = ()) -> None:
        """Raise a ValueError naming this filter and the parameter when a parameter is unusable."""
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if field.name == "tokenization" and value is not False:
                raise ValueError(f"{self.name}: tokenization must be false (no tokenizer model is used)")
            if field.name == "lang" and value != "en":
                raise ValueError(
                    f"{self.name}: lang must be 'en' (only an English word list ships), got {value!r}"
                )
        for pname in (low, high, *positive):
            value = getattr(self, pname)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise ValueError(f"{self.name}: {pname} must be a number, got {value!r}")
        for pname in positive:
            value = getattr(self, pname)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{self.name}: {pname} must be a positive integer, got {value!r}")
        if getattr(self, low) > getattr(self, high):
            raise ValueError(f"{self.name}: {low}={getattr(self, low)} exceeds {high}={getattr(self, high)}")


@dataclass(frozen=True, kw_only=True)
class AlphanumericFilter(TextFilter):
    """Share of alphanumeric characters (``str.isalnum``) among all characters; drops symbol-heavy text."""

    name: ClassVar[str] = "alphanumeric_filter"
    tokenization: bool = False
    min_ratio: float = 0.25
    max_ratio: float = sys.maxsize

    def __post_init__(self) -> None:
        self._check(low="min_ratio", high="max_ratio")

    def _bounds(self) -> tuple[float, float]:
        return self.min_ratio, self.max_ratio

    def _stat_one(self, text: str) -> float:
        return sum(c.isalnum() for c in text) / len(text) if text else 0.0

    def _compute_chunk(self, chunk: _Chunk) -> np.ndarray:
        return chunk.ratio(_alnum_table()[chunk.cp])


@dataclass(frozen=True, kw_only=True)
class SpecialCharactersFilter(TextFilter):
    """Share of Data-Juicer's special characters (punctuation, digits, whitespace, symbols, emoji)."""

    name: ClassVar[str] = "special_characters_filter"
    min_ratio: float = 0.0
    max_ratio: float = 0.25

    def __post_init__(self) -> None:
        self._check(low="min_ratio", high="max_ratio")

    def _bounds(self) -> tuple[float, float]:
        return self.min_ratio, self.max_ratio

    def _stat_one(self, text: str) -> float:
        specials = _special_chars()
        return sum(c in specials for c in text) / len(text) if text else 0.0

    def _compute_chunk(self, chunk: _Chunk) -> np.ndarray:
        return chunk.ratio(_special_table()[chunk.cp])


@dataclass(frozen=True, kw_only=True)
class CharacterRepetitionFilter(TextFilter):
    """Share of character n-grams taken by the most repeated ones; drops looping, stuttering text."""

    name: ClassVar[str] = "character_repetition_filter"
    rep_len: int = 10
    min_ratio: float = 0.0
    max_ratio: float = 0.5

    def __post_init__(self) -> None:
        self._check(low="min_ratio", high="max_ratio", positive=("rep_len",))

    def _bounds(self) -> tuple[float, float]:
        return self.min_ratio, self.max_ratio

    def _stat_one(self, text: str) -> float:
        n = self.rep_len
        counts = sorted(Counter(text[i : i + n] for i in range(len(text) - n + 1)).values(), reverse=True)
        if not counts:
            return 0.0
        distinct = len(counts)
        repeated = distinct - counts.count(1)
        top = min(int(np.sqrt(distinct)), repeated)
        return sum(counts[:top]) / sum(counts)

    def _compute_chunk(self, chunk: _Chunk) -> np.ndarray:
        out = np.zeros(chunk.n, dtype=np.float64)
        rows = np.repeat(np.arange(chunk.n, dtype=np.int64), chunk.lengths)
        values = chunk.cp.astype(np.uint64) + np.uint64(1)
        return self._settle(chunk, out, _rows_with_repeated_window(values, rows, self.rep_len, chunk.n))


@dataclass(frozen=True, kw_only=True)
class FlaggedWordsFilter(TextFilter):
    """Share of words found in the packaged English flagged-word list (profanity, sexual terms, slurs)."""

    name: ClassVar[str] = "flagged_words_filter"
    lang: str = "en"
    tokenization: bool = False
    min_ratio: float = 0.0
    max_ratio: float = 0.045

    def __post_init__(self) -> None:
        self._check(low="min_ratio", high="max_ratio")

    def _bounds(self) -> tuple[float, float]:
        return self.min_ratio, self.max_ratio

    def _stat_one(self, text: str) -> float:
        words = dj_words(text, lower=True)
        if not words:
            return 0.0
        flagged = flagged_words()
        return min(sum(w in flagged for w in words) / len(words), 1.0)

    def _compute_chunk(self, chunk: _Chunk) -> np.ndarray:
        out = np.zeros(chunk.n, dtype=np.float64)
        first, last, word_rows = chunk.words()
        hashes = chunk.ascii_lower_word_hashes(first, last)
        table = _flagged_hashes()
        hits = table[np.minimum(np.searchsorted(table, hashes), table.size - 1)] == hashes
        suspects = chunk.non_ascii()
        suspects[word_rows[hits]] = True
        return self._settle(chunk, out, suspects)


@cache
def _flagged_hashes() -> np.ndarray:
    return np.array(sorted(_word_hash(w) for w in flagged_words()), dtype=np.uint64)


@dataclass(frozen=True, kw_only=True)
class WordRepetitionFilter(TextFilter):
    """Share of word n-grams that occur more than once; drops captions that repeat a phrase."""

    name: ClassVar[str] = "word_repetition_filter"
    lang: str = "en"
    tokenization: bool = False
    rep_len: int = 10
    min_ratio: float = 0.0
    max_ratio: float = 0.5

    def __post_init__(self) -> None:
        self._check(low="min_ratio", high="max_ratio", positive=("rep_len",))

    def _bounds(self) -> tuple[float, float]:
        return self.min_ratio, self.max_ratio

    def _stat_one(self, text: str) -> float:
        words = dj_words(text, lower=True)
        n = self.rep_len
        counts = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1)).values()
        if not counts:
            return 0.0
        return sum(c for c in counts if c > 1) / sum(counts)

    def _compute_chunk(self, chunk: _Chunk) -> np.ndarray:
        out = np.zeros(chunk.n, dtype=np.float64)
        first, last, word_rows = chunk.words()
        hashes = chunk.ascii_lower_word_hashes(first, last)
        suspects = _rows_with_repeated_window(hashes, word_rows, self.rep_len, chunk.n) | chunk.non_ascii()
        return self._settle(chunk, out, suspects)


@dataclass(frozen=True, kw_only=True)
class WordsNumFilter(TextFilter):
    """Number of words left after stripping special characters; drops empty or overlong captions."""

    name: ClassVar[str] = "words_num_filter"
    lang: str = "en"
    tokenization: bool = False
    min_num: int = 1
    max_num: int = sys.maxsize

    def __post_init__(self) -> None:
        self._check(low="min_num", high="max_num")

    def _bounds(self) -> tuple[float, float]:
        return self.min_num, self.max_num

    def _stat_one(self, text: str) -> float:
        return float(len(dj_words(text, lower=False)))

    def _compute_chunk(self, chunk: _Chunk) -> np.ndarray:
        _, _, word_rows = chunk.words()
        return np.bincount(word_rows, minlength=chunk.n).astype(np.float64)


FILTERS: dict[str, type[TextFilter]] = {
    cls.name: cls
    for cls in (
        AlphanumericFilter,
        CharacterRepetitionFilter,
        FlaggedWordsFilter,
        SpecialCharactersFilter,
        WordRepetitionFilter,
        WordsNumFilter,
    )
}
"""Filter registry: name (also the rejected-row reason) -> class."""

RECIPES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # SynthVLM, Table 1: the Data-Juicer operators and thresholds of the paper, in its order.
    "synthvlm": [
        ("alphanumeric_filter", {"tokenization": False, "min_ratio": 0.60}),
        ("character_repetition_filter", {"rep_len": 10, "max_ratio": 0.09373663}),
        ("flagged_words_filter", {"lang": "en", "tokenization": False, "max_ratio": 0.0}),
        ("special_characters_filter", {"min_ratio": 0.16534802, "max_ratio": 0.42023757}),
        (
            "word_repetition_filter",
            {"lang": "en", "tokenization": False, "rep_len": 10, "max_ratio": 0.03085751},
        ),
    ],
    "none": [],
}
"""Named filter recipes: presets as data, each a list of (filter name, parameters)."""


def build_filter(name: str, params: Mapping[str, Any]) -> TextFilter:
    """Build a registered filter from config, with errors that name the filter and the parameter."""
    cls = FILTERS.get(name)
    if cls is None:
        raise ValueError(f"unknown filter {name!r}; valid filters: {', '.join(sorted(FILTERS))}")
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; valid parameters: {', '.join(valid)}"
        )
    return cls(**params)


def apply_filters(
    filters: Sequence[TextFilter], captions: Sequence[str]
) -> tuple[np.ndarray, list[tuple[int, str, float]]]:
    """Run filters in order, each only on the captions still kept; report the first filter dropping each row.

    Returns the keep mask and ``(row index, filter name, statistic)`` per dropped row, sorted by row index.
    """
    keep = np.ones(len(captions), dtype=bool)
    drops: list[tuple[int, str, float]] = []
    for f in filters:
        rows = np.flatnonzero(keep)
        if rows.size == 0:
            break
        texts = captions if rows.size == len(captions) else [captions[i] for i in rows.tolist()]
        values = f.compute(texts)
        dropped = ~f.keep(values)
        drops.extend(
            zip(rows[dropped].tolist(), [f.name] * int(dropped.sum()), values[dropped].tolist(), strict=True)
        )
        keep[rows[dropped]] = False
    drops.sort(key=lambda d: d[0])
    return keep, drops
