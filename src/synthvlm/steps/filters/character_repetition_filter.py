"""``character_repetition_filter``: the share of character n-grams taken by the most repeated ones."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthvlm.steps.filters import kernels
from synthvlm.steps.filters.base import TextFilter, lower_bound, positive_int, upper_bound
from synthvlm.steps.filters.text import Chunk


@dataclass(frozen=True, kw_only=True)
class CharacterRepetitionFilter(TextFilter):
    """Share of character n-grams taken by the most repeated ones; drops looping, stuttering text."""

    name: ClassVar[str] = "character_repetition_filter"
    rep_len: int = positive_int(10)
    min_ratio: float = lower_bound(0.0)
    max_ratio: float = upper_bound(0.5)

    def _stat_one(self, text: str) -> float:
        n = self.rep_len
        counts = sorted(Counter(text[i : i + n] for i in range(len(text) - n + 1)).values(), reverse=True)
        if not counts:
            return 0.0
        distinct = len(counts)
        repeated = distinct - counts.count(1)
        top = min(int(np.sqrt(distinct)), repeated)
        return sum(counts[:top]) / sum(counts)

    def _compute_chunk(self, chunk: Chunk) -> np.ndarray:
        n, cp = self.rep_len, chunk.cp

        def equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            """Whether the n characters from a equal the n characters from b."""
            same = cp[a] == cp[b]
            for k in range(1, n):
                same &= cp[a + k] == cp[b + k]
            return same

        rows, counts, windows, unsure = kernels.repeated_windows(cp, chunk.offsets, n, equal)
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
