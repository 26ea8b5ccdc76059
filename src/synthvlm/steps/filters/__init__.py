"""Rule-based caption filters whose statistics match Data-Juicer's operators of the same name, vectorised.

Each filter computes one float64 statistic per caption, defined exactly as the Data-Juicer (1.6) operator of
the same name defines it with ``tokenization=False``, and keeps a caption when ``min <= value <= max``
(Data-Juicer's default closed interval). ``docs/curation.md`` gives every definition.

Speed comes from working on all captions of a chunk at once: the captions become one NumPy array of code
points, character classes (and lower-casing) are table look-ups, counts per caption are segment sums
(``text``), and word n-gram counts come from one sort of (caption, window hash, position) keys per chunk
(``kernels``). Character n-grams are counted on 2-D blocks of captions of similar length instead (one byte
per character for ASCII ones), one short sort of (window hash, position) keys per caption. Hashes only
group candidates: every pair of windows (or word and flagged word) a hash puts together is compared
element by element, so the statistics are exact. Every filter also has a plain
per-caption reference (``_stat_one``); a caption where a hash collision was found (none on a million
captions) is computed by that reference.

One filter per file, named after its registry name; ``base`` holds the contract and the parameter checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from synthvlm.steps.filters.alphanumeric_filter import AlphanumericFilter
from synthvlm.steps.filters.base import TextFilter, apply_filters
from synthvlm.steps.filters.character_repetition_filter import CharacterRepetitionFilter
from synthvlm.steps.filters.flagged_words_filter import FlaggedWordsFilter, flagged_words
from synthvlm.steps.filters.special_characters_filter import SpecialCharactersFilter
from synthvlm.steps.filters.text import dj_words
from synthvlm.steps.filters.word_repetition_filter import WordRepetitionFilter
from synthvlm.steps.filters.words_num_filter import WordsNumFilter

__all__ = [
    "FILTERS",
    "RECIPES",
    "AlphanumericFilter",
    "CharacterRepetitionFilter",
    "FlaggedWordsFilter",
    "SpecialCharactersFilter",
    "TextFilter",
    "WordRepetitionFilter",
    "WordsNumFilter",
    "apply_filters",
    "build_filter",
    "dj_words",
    "flagged_words",
]

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
