"""The filter contract (one float64 statistic per caption, a closed-interval keep rule), the parameter kinds
that check themselves, and the driver that runs filters in order."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from synthvlm.steps.filters.text import Chunk

_Check = Callable[[Any], str | None]
"""What is wrong with a parameter's value, as a sentence to follow its name; None if nothing is."""


def _parameter(default: Any, check: _Check, *, bound: str | None = None) -> Any:
    """A dataclass field that carries its own check (and, for the two bounds, which end it is)."""
    return dataclasses.field(default=default, metadata={"check": check, "bound": bound})


def _not_number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return f"must be a number, got {value!r}"
    return None


def _not_positive_int(value: Any) -> str | None:
    if problem := _not_number(value):
        return problem
    if not isinstance(value, int) or value < 1:
        return f"must be a positive integer, got {value!r}"
    return None


def lower_bound(default: float) -> Any:
    """The parameter holding the smallest statistic kept (``min_*`` in Data-Juicer)."""
    return _parameter(default, _not_number, bound="low")


def upper_bound(default: float) -> Any:
    """The parameter holding the largest statistic kept (``max_*`` in Data-Juicer)."""
    return _parameter(default, _not_number, bound="high")


def positive_int(default: int) -> Any:
    """A size parameter, such as an n-gram length."""
    return _parameter(default, _not_positive_int)


def no_tokenizer() -> Any:
    """Data-Juicer's ``tokenization``: accepted so its configs load, but only false (no tokenizer model)."""
    return _parameter(False, lambda v: None if v is False else "must be false (no tokenizer model is used)")


def english_only() -> Any:
    """Data-Juicer's ``lang``: accepted so its configs load, but only 'en' (the one word list that ships)."""
    return _parameter(
        "en", lambda v: None if v == "en" else f"must be 'en' (only an English word list ships), got {v!r}"
    )


class TextFilter(ABC):
    """A caption filter: one statistic per caption and a closed-interval keep rule, as in Data-Juicer.

    Subclasses are keyword-only frozen dataclasses whose parameters are declared with the helpers above,
    exactly one ``lower_bound`` and one ``upper_bound`` among them; construction runs every check.
    """

    name: ClassVar[str]
    chunk_rows: ClassVar[int] = 4096
    """Captions per vectorised chunk: bounds memory, and keeps a chunk's arrays small enough to stay in
    cache (larger chunks were measured slower: fresh multi-megabyte arrays cost page faults on every
    operation). A filter that cuts its chunk into smaller blocks itself may take more."""

    def __post_init__(self) -> None:
        """Raise a ValueError naming this filter and the parameter when a parameter is unusable."""
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            check = field.metadata.get("check")
            problem = check(getattr(self, field.name)) if check else None
            if problem:
                raise ValueError(f"{self.name}: {field.name} {problem}")
        low, high = self._bound_names()
        if getattr(self, low) > getattr(self, high):
            raise ValueError(f"{self.name}: {low}={getattr(self, low)} exceeds {high}={getattr(self, high)}")

    def compute(self, captions: Sequence[str]) -> np.ndarray:
        """The float64 statistic of every caption, in order."""
        texts = list(captions)
        step = self.chunk_rows
        parts = [self._compute_chunk(Chunk(texts[i : i + step])) for i in range(0, len(texts), step)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)

    def keep(self, values: np.ndarray) -> np.ndarray:
        """True where ``low <= value <= high`` (Data-Juicer's default closed interval on both ends)."""
        low, high = (getattr(self, name) for name in self._bound_names())
        return (values >= low) & (values <= high)

    @abstractmethod
    def _compute_chunk(self, chunk: Chunk) -> np.ndarray: ...

    @abstractmethod
    def _stat_one(self, text: str) -> float:
        """The statistic of one caption, written plainly: the reference the vectorised path must equal."""

    @classmethod
    def _bound_names(cls) -> tuple[str, str]:
        """The names of the lower and the upper bound parameter."""
        names = {f.metadata.get("bound"): f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return names["low"], names["high"]

    def _settle(self, chunk: Chunk, out: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Fill in the statistic of the rows a hash collision left unsure with the per-caption reference."""
        for i in np.flatnonzero(rows).tolist():
            out[i] = self._stat_one(chunk.texts[i])
        return out


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
