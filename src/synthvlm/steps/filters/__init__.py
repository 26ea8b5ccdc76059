"""Rule-based caption filters whose statistics match Data-Juicer's operators of the same name, vectorised.

Each filter computes one float64 statistic per caption, defined exactly as the Data-Juicer (1.6) operator of
the same name defines it with ``tokenization=False``, and keeps a caption when ``min <= value <= max``
(Data-Juicer's default closed interval). ``docs/curation.md`` gives every definition.

Speed comes from working on all captions of a chunk at once: the captions become one NumPy array of code
points, character classes (and lower-casing) are table look-ups, counts per caption are segment sums, and
n-gram counts come from one sort of (caption, window hash, position) keys per chunk. Hashes only group
candidates: every pair of windows (or word and flagged word) a hash puts together is compared element by
element, so the statistics are exact. Every filter also has a plain per-caption reference (``_stat_one``);
a caption where a hash collision was found (none on a million captions) is computed by that reference.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import sys
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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

_CHUNK_ROWS = 4096
"""Captions per vectorised chunk: bounds memory, and keeps a chunk's arrays small enough to stay in cache
(larger chunks were measured slower: fresh multi-megabyte arrays cost page faults on every operation)."""
_HASH_P = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
# An odd multiplier applied to every hash: without it, a change in a slice's first values moves only the low
# bits of the polynomial sum, and sort keys drop the low bits (they hold the window position).
_HASH_MIX = 0xD6E8FEB86659FD93
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
def _lower_table() -> np.ndarray:
    """``str.lower`` of each single code point, as a code point; U+0130 (the one character whose lower case
    is two code points) maps to itself and is handled by ``_Chunk.lowered`` instead."""
    return np.fromiter(
        (ord(chr(c).lower()) if c != 0x130 else c for c in range(sys.maxunicode + 1)),
        dtype=np.uint32,
        count=sys.maxunicode + 1,
    )


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


def _bits(value: int) -> int:
    """Bits that hold every integer in ``0..value`` (at least one)."""
    return max(int(value).bit_length(), 1)


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` items owned by i, laid out owner after owner: each item's owner and rank in it."""
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(owner.size, dtype=np.int64) - np.repeat(first, counts)


_POWERS: list[np.ndarray] = []


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """P**k and MIX * P**-k modulo 2**64 for k < size, computed once and reused across chunks."""
    if not _POWERS or _POWERS[0].size < size:
        grown = max(size, 1 << 20)
        powers = np.full(grown, _HASH_P, dtype=np.uint64)
        inverse = np.full(grown, np.uint64(pow(int(_HASH_P), -1, 1 << 64)), dtype=np.uint64)
        powers[0], inverse[0] = 1, _HASH_MIX
        _POWERS[:] = [np.cumprod(powers), np.cumprod(inverse)]
    return _POWERS[0][:size], _POWERS[1][:size]


def _prefix_hashes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums of ``(values[k] + 1) * P**k`` (``size + 1`` of them) and the matching ``MIX * P**-k``.

    The hash of a slice ``[s, e)`` is ``(prefix[e] - prefix[s]) * unshift[s]``, i.e.
    ``MIX * sum((values[s + k] + 1) * P**k)``: equal slices hash alike wherever they sit; unequal ones may
    too, so callers confirm every hash match element by element.
    """
    powers, unshift = _powers(values.size)
    prefix = np.zeros(values.size + 1, dtype=np.uint64)
    np.multiply(values, powers, out=prefix[1:])
    prefix[1:] += powers
    np.cumsum(prefix, out=prefix)
    return prefix, unshift


def _slice_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The hash of every slice ``values[s:e]`` (see ``_prefix_hashes``)."""
    prefix, unshift = _prefix_hashes(values)
    return (prefix[ends] - prefix[starts]) * unshift[starts]


def _window_hashes(values: np.ndarray, n: int) -> np.ndarray:
    """The hash of every window ``values[i:i + n]``, ``i = 0 .. size - n``, by contiguous array operations."""
    prefix, unshift = _prefix_hashes(values)
    hashes = prefix[n:] - prefix[:-n]
    hashes *= unshift[: hashes.size]
    return hashes


def _equal_slices(
    a: np.ndarray, a_starts: np.ndarray, b: np.ndarray, b_starts: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Whether ``a[a_starts[i]:][:lengths[i]] == b[b_starts[i]:][:lengths[i]]``, element by element."""
    owner, rank = _ragged(lengths)
    differ = a[np.repeat(a_starts, lengths) + rank] != b[np.repeat(b_starts, lengths) + rank]
    return np.bincount(owner[differ], minlength=lengths.size) == 0


def _repeated_windows(
    values: np.ndarray,
    offsets: np.ndarray,
    n: int,
    equal: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every window of ``n`` consecutive values that occurs more than once inside its row, counted exactly.

    Row i holds ``values[offsets[i]:offsets[i + 1]]``. One sort of 64-bit keys (row | middle bits of the
    window hash | window position) lines up each row's equal windows; every pair of neighbours in a group
    is then compared value by value through ``equal(starts_a, starts_b)``, so a group is a set of truly
    equal windows, or its row comes back in ``unsure`` (a hash collision) for the caller to settle.

    Returns each repeated group's row (ascending) and count, the number of windows of every row, and the
    ``unsure`` row mask.
    """
    n_rows = offsets.size - 1
    windows = np.maximum(np.diff(offsets) - n + 1, 0)
    unsure = np.zeros(n_rows, dtype=bool)
    total = int(windows.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, windows, unsure
    row_bits, pos_bits = _bits(n_rows - 1), _bits(int(windows.max()) - 1)
    first = np.cumsum(windows) - windows  # index of each row's first window
    index = np.arange(total, dtype=np.int64)
    start = index + np.repeat(offsets[:-1] - first, windows)
    key = _window_hashes(values, n)[start]
    key &= np.uint64(((1 << (64 - row_bits)) - 1) ^ ((1 << pos_bits) - 1))
    # row << (64 - row_bits) | position in the row, as index + (row << ... - first) in wrapping uint64
    row_base = (np.arange(n_rows, dtype=np.uint64) << np.uint64(64 - row_bits)) - first.astype(np.uint64)
    key |= np.repeat(row_base, windows) + index.view(np.uint64)
    key.sort()
    group = key >> np.uint64(pos_bits)
    same = np.flatnonzero(group[1:] == group[:-1])  # key[same + 1] is in the group of key[same]
    row = (key[same] >> np.uint64(64 - row_bits)).astype(np.int64)
    pos_mask = np.uint64((1 << pos_bits) - 1)
    base = offsets[row]
    ok = equal(
        base + (key[same] & pos_mask).astype(np.int64), base + (key[same + 1] & pos_mask).astype(np.int64)
    )
    unsure[row[~ok]] = True
    run = np.flatnonzero(np.diff(same, prepend=-2) != 1)
    counts = np.diff(run, append=same.size) + 1
    return row[run], counts, windows, unsure


class _Chunk:
    """The captions of one chunk as one code-point array, with per-caption offsets."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.n = len(texts)
        self.lengths = np.fromiter(map(len, texts), dtype=np.int64, count=self.n)
        self.offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.joined = "".join(texts)
        self.cp = np.frombuffer(self.joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")

    def lookup(self, table: np.ndarray) -> np.ndarray:
        """``table[cp]`` for every character (``take`` is about twice as fast as fancy indexing here)."""
        return table.take(self.cp, mode="clip")

    def lowered(self) -> _Chunk:
        """The same captions (``texts``, ``joined`` unchanged) with the code points of ``caption.lower()``.

        Lower-casing a whole caption equals lower-casing each of its words (Data-Juicer's order): the only
        context rule, final sigma, looks through case-ignorable characters only, and space, newline and tab
        are neither case-ignorable nor cased, so they stop it exactly as a word's ends do. Without capital
        sigma or U+0130 (which lower-cases to two code points) it is a per-code-point table look-up; the
        captions holding either go through ``str.lower`` itself.
        """
        low = copy.copy(self)
        low.cp = self.lookup(_lower_table())
        if "\u03a3" not in self.joined and "\u0130" not in self.joined:
            return low
        hits = np.flatnonzero((self.cp == 0x3A3) | (self.cp == 0x130))
        own = np.unique(np.searchsorted(self.offsets, hits, side="right") - 1).tolist()
        low.lengths = self.lengths.copy()
        pieces, done = [], 0
        for i in own:
            text = self.texts[i].lower()
            low.lengths[i] = len(text)
            pieces += [
                low.cp[done : self.offsets[i]],
                np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4"),
            ]
            done = self.offsets[i + 1]
        pieces.append(low.cp[done:])
        low.cp = np.concatenate(pieces)
        low.offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(low.lengths, out=low.offsets[1:])
        return low

    def ratio(self, mask: np.ndarray) -> np.ndarray:
        """Marked characters over all characters per caption; 0.0 for an empty caption, as Data-Juicer."""
        out = np.zeros(self.n, dtype=np.float64)
        some = self.lengths > 0
        if mask.size:  # one segment per non-empty caption (reduceat needs strictly increasing starts)
            out[some] = np.add.reduceat(mask, self.offsets[:-1][some], dtype=np.int64) / self.lengths[some]
        return out

    def words(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First and last character position of every word left after stripping specials, and where each
        caption's words start in that list (``n + 1`` offsets).

        A token is a maximal run of characters other than space/newline/tab inside one caption; it survives
        Data-Juicer's strip iff it holds a non-special character, and then spans from its first to its last
        non-special character.
        """
        cp = self.cp
        kept = np.flatnonzero(~self.lookup(_special_table()))  # separators are special characters too
        if kept.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(self.n + 1, dtype=np.int64)
        breaks = (cp == 32) | (cp == 10) | (cp == 9)
        breaks[self.offsets[:-1][self.lengths > 0]] = True  # a caption's start also starts a token
        token = np.cumsum(breaks)[kept]
        new = np.empty(kept.size, dtype=bool)
        new[0] = True
        np.not_equal(token[1:], token[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        first = kept[starts]
        last = kept[np.append(starts[1:] - 1, kept.size - 1)]
        return first, last, np.searchsorted(first, self.offsets)


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
        """Fill in the statistic of the rows a hash collision left unsure with the per-caption reference."""
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
        return chunk.ratio(chunk.lookup(_alnum_table()))


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
        return chunk.ratio(chunk.lookup(_special_table()))


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
        n, cp = self.rep_len, chunk.cp

        def equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            """Whether the n characters from a equal the n characters from b."""
            same = cp[a] == cp[b]
            for k in range(1, n):
                same &= cp[a + k] == cp[b + k]
            return same

        rows, counts, windows, unsure = _repeated_windows(cp, chunk.offsets, n, equal)
        # Only repeated n-grams can be among the top k (k <= number of repeated ones), so the singletons
        # enter through their number alone: distinct = windows - sum(count - 1 over repeated groups).
        repeated = np.bincount(rows, minlength=chunk.n)
        distinct = windows - np.bincount(rows, weights=counts - 1, minlength=chunk.n).astype(np.int64)
        top = np.minimum(np.sqrt(distinct).astype(np.int64), repeated)  # int(np.sqrt(D)), as Data-Juicer
        order = np.lexsort((-counts, rows))  # rows ascending, counts descending within a row
        rows, counts = rows[order], counts[order]
        rank = np.arange(rows.size) - np.repeat(np.cumsum(repeated) - repeated, repeated)
        take = rank < top[rows]
        top_sum = np.bincount(rows[take], weights=counts[take], minlength=chunk.n)  # exact integer sums
        out = np.zeros(chunk.n, dtype=np.float64)
        some = windows > 0
        out[some] = top_sum[some] / windows[some]
        return self._settle(chunk, out, unsure)


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
        low = chunk.lowered()
        first, last, word_offsets = low.words()
        lengths = last - first + 1
        hashes = _slice_hashes(low.cp, first, last + 1)
        table, screen, entry_first, entry_length, entry_cp = _flagged_table()
        # The 16-bit screen passes every flagged word's hash; the few words it passes are looked up in the
        # sorted table, and each (word, entry) pair with equal hashes is compared character by character.
        words = np.flatnonzero(screen[hashes >> np.uint64(48)])
        lo = np.searchsorted(table, hashes[words], side="left")
        hi = np.searchsorted(table, hashes[words], side="right")
        owner, rank = _ragged(hi - lo)
        words, entries = words[owner], np.repeat(lo, hi - lo) + rank
        alike = lengths[words] == entry_length[entries]
        words, entries = words[alike], entries[alike]
        match = _equal_slices(low.cp, first[words], entry_cp, entry_first[entries], lengths[words])
        flagged = np.zeros(first.size + 1, dtype=np.int64)
        flagged[words[match] + 1] = 1
        np.cumsum(flagged, out=flagged)
        hits = flagged[word_offsets[1:]] - flagged[word_offsets[:-1]]
        total = np.diff(word_offsets)
        out = np.zeros(chunk.n, dtype=np.float64)
        some = total > 0
        out[some] = np.minimum(hits[some] / total[some], 1.0)
        return out


@cache
def _flagged_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The flagged words' hashes (sorted), a screen of their top 16 bits, and each one's code points
    (first position and length in one code-point array, the last item)."""
    words = _Chunk(sorted(flagged_words()))
    hashes = _slice_hashes(words.cp, words.offsets[:-1], words.offsets[1:])
    order = np.argsort(hashes, kind="stable")
    screen = np.zeros(1 << 16, dtype=bool)
    screen[hashes >> np.uint64(48)] = True
    return hashes[order], screen, words.offsets[:-1][order], words.lengths[order], words.cp


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
        n, low = self.rep_len, chunk.lowered()
        first, last, word_offsets = low.words()
        lengths = last - first + 1
        step = np.arange(n)

        def equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            """Whether the n words from word a equal the n words from word b, character by character."""
            wa, wb = (a[:, None] + step).ravel(), (b[:, None] + step).ravel()
            same = lengths[wa] == lengths[wb]
            same[same] = _equal_slices(low.cp, first[wa[same]], low.cp, first[wb[same]], lengths[wa[same]])
            return same.reshape(-1, n).all(axis=1)

        hashes = _slice_hashes(low.cp, first, last + 1)
        rows, counts, windows, unsure = _repeated_windows(hashes, word_offsets, n, equal)
        repeated = np.bincount(rows, weights=counts, minlength=chunk.n)  # exact integer sums
        out = np.zeros(chunk.n, dtype=np.float64)
        some = windows > 0
        out[some] = repeated[some] / windows[some]
        return self._settle(chunk, out, unsure)


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
        return np.diff(chunk.words()[2]).astype(np.float64)


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
