"""``flagged_words_filter``: the share of words found in the packaged English flagged-word list."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import ClassVar

import numpy as np

from synthvlm.steps.filters import kernels
from synthvlm.steps.filters.base import TextFilter, english_only, lower_bound, no_tokenizer, upper_bound
from synthvlm.steps.filters.text import Chunk, dj_words


@cache
def flagged_words() -> frozenset[str]:
    """The packaged English flagged-word list (lower case, one word per line)."""
    text = resources.files("synthvlm").joinpath("data/flagged_words_en.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


@cache
def _flagged_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The flagged words' hashes (sorted), a screen of their top 16 bits, and each one's code points
    (first position and length in one code-point array, the last item)."""
    words = Chunk(sorted(flagged_words()))
    hashes = kernels.slice_hashes(words.cp, words.offsets[:-1], words.offsets[1:])
    order = np.argsort(hashes, kind="stable")
    screen = np.zeros(1 << 16, dtype=bool)
    screen[hashes >> np.uint64(48)] = True
    return hashes[order], screen, words.offsets[:-1][order], words.lengths[order], words.cp


@dataclass(frozen=True, kw_only=True)
class FlaggedWordsFilter(TextFilter):
    """Share of words found in the packaged English flagged-word list (profanity, sexual terms, slurs)."""

    name: ClassVar[str] = "flagged_words_filter"
    lang: str = english_only()
    tokenization: bool = no_tokenizer()
    min_ratio: float = lower_bound(0.0)
    max_ratio: float = upper_bound(0.045)

    def _stat_one(self, text: str) -> float:
        words = dj_words(text, lower=True)
        if not words:
            return 0.0
        flagged = flagged_words()
        return min(sum(w in flagged for w in words) / len(words), 1.0)

    def _compute_chunk(self, chunk: Chunk) -> np.ndarray:
        low = chunk.lowered()
        first, last, word_offsets = low.words()
        lengths = last - first + 1
        hashes = kernels.slice_hashes(low.cp, first, last + 1)
        table, screen, entry_first, entry_length, entry_cp = _flagged_table()
        # The 16-bit screen passes every flagged word's hash; the few words it passes are looked up in the
        # sorted table, and each (word, entry) pair with equal hashes is compared character by character.
        words = np.flatnonzero(screen[hashes >> np.uint64(48)])
        lo = np.searchsorted(table, hashes[words], side="left")
        hi = np.searchsorted(table, hashes[words], side="right")
        owner, rank = kernels.ragged(hi - lo)
        words, entries = words[owner], np.repeat(lo, hi - lo) + rank
        alike = lengths[words] == entry_length[entries]
        words, entries = words[alike], entries[alike]
        match = kernels.equal_slices(low.cp, first[words], entry_cp, entry_first[entries], lengths[words])
        flagged = np.zeros(first.size + 1, dtype=np.int64)
        flagged[words[match] + 1] = 1
        np.cumsum(flagged, out=flagged)
        hits = flagged[word_offsets[1:]] - flagged[word_offsets[:-1]]
        total = np.diff(word_offsets)
        out = np.zeros(chunk.n, dtype=np.float64)
        some = total > 0
        out[some] = np.minimum(hits[some] / total[some], 1.0)
        return out
