"""Captions as code-point arrays, with Data-Juicer's character classes, lower-casing and word split.

All captions of a chunk become one NumPy array of code points, so character classes (and lower-casing) are
table look-ups over every code point and counts per caption are segment sums. ``dj_words`` is the same
word split written plainly, for the per-caption references.
"""

from __future__ import annotations

import copy
import functools
import re
import sys
from functools import cache
from importlib import resources

import numpy as np

_WORD_SPLIT = re.compile("[ \n\t]")  # Data-Juicer splits words on space, newline and tab only


@cache
def special_table() -> np.ndarray:
    """Boolean look-up table over all code points: is this character in Data-Juicer's SPECIAL_CHARACTERS.

    The set is data (``data/dj_special_characters.txt``, which says where it comes from), read once.
    """
    text = resources.files("synthvlm").joinpath("data/dj_special_characters.txt").read_text(encoding="utf-8")
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            lo, _, hi = line.partition("..")
            table[int(lo, 16) : int(hi or lo, 16) + 1] = True
    return table


@cache
def special_chars() -> str:
    """The same set as a string, for ``str.strip`` in the per-caption reference."""
    return "".join(map(chr, np.flatnonzero(special_table()).tolist()))


@cache
def alnum_table() -> np.ndarray:
    """Boolean look-up table of ``str.isalnum`` over all code points (this Python's Unicode database)."""
    return np.frombuffer(bytes(chr(c).isalnum() for c in range(sys.maxunicode + 1)), dtype=bool)


@cache
def _lower_table() -> np.ndarray:
    """``str.lower`` of each single code point, as a code point; U+0130 (the one character whose lower case
    is two code points) maps to itself and is handled by ``Chunk.lowered`` instead."""
    return np.fromiter(
        (ord(chr(c).lower()) if c != 0x130 else c for c in range(sys.maxunicode + 1)),
        dtype=np.uint32,
        count=sys.maxunicode + 1,
    )


def dj_words(text: str, *, lower: bool) -> list[str]:
    """Words as Data-Juicer's non-tokenizer path makes them: split, optionally lower-case, strip specials."""
    words = [w for w in _WORD_SPLIT.split(text) if w]
    if lower:
        words = [w.lower() for w in words]
    specials = special_chars()
    return [s for s in (w.strip(specials) for w in words) if s]


class Chunk:
    """The captions of one chunk as one code-point array, with per-caption offsets.

    The joined text and its code points are made on first use: a filter that lays captions out its own
    way (``character_repetition_filter``) never pays for them.
    """

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.n = len(texts)
        self.lengths = np.fromiter(map(len, texts), dtype=np.int64, count=self.n)
        self.offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])

    @functools.cached_property
    def joined(self) -> str:
        """All captions of the chunk, one after the other."""
        return "".join(self.texts)

    @functools.cached_property
    def cp(self) -> np.ndarray:
        """The code points of ``joined``; caption i is ``cp[offsets[i]:offsets[i + 1]]``."""
        return np.frombuffer(self.joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")

    def lookup(self, table: np.ndarray) -> np.ndarray:
        """``table[cp]`` for every character (``take`` is about twice as fast as fancy indexing here)."""
        return table.take(self.cp, mode="clip")

    def lowered(self) -> Chunk:
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
        kept = np.flatnonzero(~self.lookup(special_table()))  # separators are special characters too
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
