"""``words_num_filter``: the number of words."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from synthvlm.steps.filters.base import TextFilter, english_only, lower_bound, no_tokenizer, upper_bound
from synthvlm.steps.filters.text import Chunk, dj_words


@dataclass(frozen=True, kw_only=True)
class WordsNumFilter(TextFilter):
    """Number of words left after stripping special characters; drops empty or overlong captions."""

    name: ClassVar[str] = "words_num_filter"
    lang: str = english_only()
    tokenization: bool = no_tokenizer()
    min_num: int = lower_bound(1)
    max_num: int = upper_bound(sys.maxsize)

    def _stat_one(self, text: str) -> float:
        return float(len(dj_words(text, lower=False)))

    def _compute_chunk(self, chunk: Chunk) -> np.ndarray:
        return np.diff(chunk.words()[2]).astype(np.float64)
