"""``word_repetition_filter``: the share of word n-grams that occur more than once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthvlm.steps.filters import kernels
from synthvlm.steps.filters.base import (
    TextFilter,
    english_only,
    lower_bound,
    no_tokenizer,
    positive_int,
    upper_bound,
)
from synthvlm.steps.filters.text import Chunk, dj_words


@dataclass(frozen=True, kw_only=True)
class WordRepetitionFilter(TextFilter):
    """Share of word n-grams that occur more than once; drops captions that repeat a phrase."""

    name: ClassVar[str] = "word_repetition_filter"
    lang: str = english_only()
    tokenization: bool = no_tokenizer()
    rep_len: int = positive_int(10)
    min_ratio: float = lower_bound(0.0)
    max_ratio: float = upper_bound(0.5)

    def _stat_one(self, text: str) -> float:
        words = dj_words(text, lower=True)
        n = self.rep_len
        counts = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1)).values()
        if not counts:
            return 0.0
        return sum(c for c in counts if c > 1) / sum(counts)

    def _compute_chunk(self, chunk: Chunk) -> np.ndarray:
        n, low = self.rep_len, chunk.lowered()
        first, last, word_offsets = low.words()
        lengths = last - first + 1
        step = np.arange(n)

        def equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            """Whether the n words from word a equal the n words from word b, character by character."""
            wa, wb = (a[:, None] + step).ravel(), (b[:, None] + step).ravel()
            same = lengths[wa] == lengths[wb]
            same[same] = kernels.equal_slices(
                low.cp, first[wa[same]], low.cp, first[wb[same]], lengths[wa[same]]
            )
            return same.reshape(-1, n).all(axis=1)

        hashes = kernels.slice_hashes(low.cp, first, last + 1)
        rows, counts, windows, unsure = kernels.repeated_windows(hashes, word_offsets, n, equal)
        repeated = np.bincount(rows, weights=counts, minlength=chunk.n)  # exact integer sums
        out = np.zeros(chunk.n, dtype=np.float64)
        some = windows > 0
        out[some] = repeated[some] / windows[some]
        return self._settle(chunk, out, unsure)
