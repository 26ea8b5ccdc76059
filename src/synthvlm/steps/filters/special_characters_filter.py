"""``special_characters_filter``: the share of Data-Juicer's special characters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthvlm.steps.filters.base import TextFilter, lower_bound, upper_bound
from synthvlm.steps.filters.text import Chunk, special_chars, special_table


@dataclass(frozen=True, kw_only=True)
class SpecialCharactersFilter(TextFilter):
    """Share of Data-Juicer's special characters (punctuation, digits, whitespace, symbols, emoji)."""

    name: ClassVar[str] = "special_characters_filter"
    min_ratio: float = lower_bound(0.0)
    max_ratio: float = upper_bound(0.25)

    def _stat_one(self, text: str) -> float:
        specials = special_chars()
        return sum(c in specials for c in text) / len(text) if text else 0.0

    def _compute_chunk(self, chunk: Chunk) -> np.ndarray:
        return chunk.ratio(chunk.lookup(special_table()))
