"""``alphanumeric_filter``: the share of alphanumeric characters."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthvlm.steps.filters.base import TextFilter, lower_bound, no_tokenizer, upper_bound
from synthvlm.steps.filters.text import Chunk, alnum_table


@dataclass(frozen=True, kw_only=True)
class AlphanumericFilter(TextFilter):
    """Share of alphanumeric characters (``str.isalnum``) among all characters; drops symbol-heavy text."""

    name: ClassVar[str] = "alphanumeric_filter"
    tokenization: bool = no_tokenizer()
    min_ratio: float = lower_bound(0.25)
    max_ratio: float = upper_bound(sys.maxsize)

    def _stat_one(self, text: str) -> float:
        return sum(c.isalnum() for c in text) / len(text) if text else 0.0

    def _compute_chunk(self, chunk: Chunk) -> np.ndarray:
        return chunk.ratio(chunk.lookup(alnum_table()))
