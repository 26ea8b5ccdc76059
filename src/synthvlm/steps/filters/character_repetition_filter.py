"""``character_repetition_filter``: the share of character n-grams taken by the most repeated ones."""

from __future__ import annotations

import bisect
import operator
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthvlm.steps.filters import kernels
from synthvlm.steps.filters.base import TextFilter, lower_bound, positive_int, upper_bound
from synthvlm.steps.filters.text import Chunk

_BLOCK = 1 << 16
"""Characters per block (captions of similar length, one row each): large enough that NumPy's per-call cost
is small against a block's work, small enough that its largest array (a 64-bit hash per window, 512 KiB)
stays in a core's L2 cache even where that is 1 MiB."""


def _widest(shortest: int) -> int:
    """The longest caption a block whose shortest has ``shortest`` characters takes: an eighth (+4) longer,
    so that padding windows (hashed, sorted, and all-zero ones paired, then dropped) stay few, yet a
    block still gathers many captions (a quarter longer and exact lengths were both measured slower)."""
    return shortest + shortest // 8 + 4


@dataclass(frozen=True, kw_only=True)
class CharacterRepetitionFilter(TextFilter):
    """Share of character n-grams taken by the most repeated ones; drops looping, stuttering text."""

    name: ClassVar[str] = "character_repetition_filter"
    chunk_rows: ClassVar[int] = 1 << 15  # blocks bound the arrays' size; more rows make fuller blocks
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
        """Repeated windows counted block by block (``_blocks``), then each caption's top-k share.

        Why blocks: one short sort per caption (``kernels.repeated_windows_by_row``) instead of one sort of
        every window of the chunk, 64-bit words of 8 ASCII characters instead of one code point at a time
        for hashing and for checking pairs, and arrays that stay in cache.
        """
        n = self.rep_len
        windows = np.maximum(chunk.lengths - n + 1, 0)
        rows, counts, pairs, unsure = [], [], np.zeros(chunk.n, dtype=np.int64), np.zeros(chunk.n, dtype=bool)
        for block, members in self._blocks(chunk, windows):
            got_rows, got_counts, got_pairs, got_unsure = kernels.repeated_windows_by_row(
                block, windows[members], n
            )
            rows.append(members[got_rows])
            counts.append(got_counts)
            pairs[members] = got_pairs
            unsure[members[got_unsure]] = True
        group_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        group_counts = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        # Only repeated n-grams can be among the top k (k <= number of repeated ones), so the singletons
        # enter through their number alone: distinct = windows - (windows in a group beyond its first).
        repeated = np.bincount(group_rows, minlength=chunk.n)
        top = np.minimum(np.sqrt(windows - pairs).astype(np.int64), repeated)  # int(np.sqrt(D)), as DJ
        # A row whose top k is all its groups sums them all; only the others need their counts ranked.
        whole = top[group_rows] == repeated[group_rows]
        top_sum = np.bincount(group_rows[whole], weights=group_counts[whole], minlength=chunk.n).astype(float)
        part = ~whole
        # (row, count descending) in one sortable integer: row above bit 32, 2**32 - 1 - count below
        key = np.sort((group_rows[part] << 32) | (0xFFFFFFFF - group_counts[part]))
        part_rows, part_counts = key >> 32, 0xFFFFFFFF - (key & 0xFFFFFFFF)
        first = np.flatnonzero(np.diff(part_rows, prepend=-1))  # where each row's groups start
        take = np.arange(key.size) - np.repeat(first, np.diff(first, append=key.size)) < top[part_rows]
        top_sum += np.bincount(part_rows[take], weights=part_counts[take], minlength=chunk.n)  # exact sums
        out = np.zeros(chunk.n, dtype=np.float64)
        some = windows > 0
        out[some] = top_sum[some] / windows[some]
        return self._settle(chunk, out, unsure)

    def _blocks(self, chunk: Chunk, windows: np.ndarray):
        """``(block, rows)`` pairs covering every caption with two windows or more (one cannot repeat).

        Captions are sorted by (ASCII or not, length) and cut into blocks of similar length (``_widest``,
        at most ``_BLOCK`` characters), one row per caption,
        zero-padded. ASCII captions take one byte per character (NumPy ``S``), so a 64-bit word holds
        8 of them and a 10-gram is two overlapping words; the others keep 4-byte code points (``U``,
        2 a word).
        """
        n = self.rep_len
        live = np.flatnonzero(windows >= 2)
        ascii = np.fromiter(map(str.isascii, chunk.texts), dtype=bool, count=chunk.n)[live]
        order = np.argsort(chunk.lengths[live] | (ascii.astype(np.int64) << 40))
        live = live[order]
        lengths = chunk.lengths[live].tolist()
        cut = live.size - int(ascii.sum())  # the non-ASCII captions come first
        for first, stop, kind, per in ((0, cut, "U", 2), (cut, live.size, "S", 8)):
            s = first
            while s < stop:
                limit = _widest(lengths[s])
                e = min(bisect.bisect_right(lengths, limit, lo=s, hi=stop), s + max(1, _BLOCK // limit))
                members = live[s:e]
                ids = members.tolist()
                texts = operator.itemgetter(*ids)(chunk.texts) if len(ids) > 1 else [chunk.texts[ids[0]]]
                width = lengths[e - 1] + max(per - n, 0)
                block = np.array(texts, dtype=f"{kind}{width}")
                yield block.view(np.uint8 if kind == "S" else np.uint32).reshape(e - s, width), members
                s = e
