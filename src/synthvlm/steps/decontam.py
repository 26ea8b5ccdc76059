"""Decontamination: drop pool captions that share word n-grams with evaluation-set captions.

Both sides are normalised as for exact dedup (casefold, no punctuation, single spaces) and split into words.
A caption's overlap is the fraction of its distinct word n-grams found in the evaluation set; a caption
shorter than n words is one n-gram (its whole text), so a short caption copied from an evaluation set
still matches. The reported eval item is the one sharing the most of the caption's n-grams (the first in
file order on ties).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from synthvlm.config import CurateConfig, DecontamConfig
from synthvlm.core import fsio
from synthvlm.core.errors import UserError
from synthvlm.core.needs import Inputs, Need
from synthvlm.models import registry
from synthvlm.steps.base import OPERATIONAL, CurateStep, Decision, Drop
from synthvlm.steps.dedup import normalize


def ngrams(text: str, n: int) -> set[str]:
    """Distinct word n-grams of the normalised text (the whole text when it has fewer than n words)."""
    words = normalize(text).split(" ")
    if len(words) <= n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class EvalItem:
    """One evaluation caption, with where it came from (reported with every match)."""

    caption: str
    source_file: str
    source_index: int
    source_id: str | None

    def describe(self) -> str:
        ident = f" ({self.source_id})" if self.source_id else ""
        return f"{self.source_file}:{self.source_index}{ident}: {self.caption}"


@dataclass(frozen=True)
class Match:
    """A contaminated caption: its overlap fraction and the evaluation item it overlaps most."""

    overlap: float
    item: EvalItem


class EvalIndex:
    """Word n-grams of evaluation captions, each mapped to the items that contain it."""

    def __init__(self, items: Sequence[EvalItem], *, n: int) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}.")
        self.n = n
        self.items = list(items)
        self._index: dict[str, list[int]] = {}
        for i, item in enumerate(self.items):
            for gram in ngrams(item.caption, n):
                self._index.setdefault(gram, []).append(i)

    @classmethod
    def from_files(cls, paths: Sequence[str], *, n: int, fmt: str = "auto") -> EvalIndex:
        """Read evaluation captions with the ingest readers (any format they read), skipping bad records."""
        from synthvlm.readers import Record, expand_inputs, read

        items = [
            EvalItem(rec.caption, rec.source_file, rec.source_index, rec.source_id)
            for path in expand_inputs(paths)
            for rec in read(path, fmt=fmt)
            if isinstance(rec, Record)
        ]
        return cls(items, n=n)

    def __len__(self) -> int:
        return len(self._index)

    def match(self, caption: str) -> Match | None:
        """The caption's overlap with the evaluation set and closest item, or None if nothing is shared."""
        grams = ngrams(caption, self.n)
        counts: dict[int, int] = {}
        shared = 0
        for gram in grams:
            hits = self._index.get(gram)
            if hits:
                shared += 1
                for i in hits:
                    counts[i] = counts.get(i, 0) + 1
        if not shared:
            return None
        best = min(counts, key=lambda i: (-counts[i], i))
        return Match(shared / len(grams), self.items[best])


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True, kw_only=True)
class DecontamStep(CurateStep):
    """Drops captions whose n-gram overlap with the evaluation captions reaches the threshold."""

    name = "decontam"
    folder = "decontam"

    config: DecontamConfig

    @classmethod
    def needs(cls, config: CurateConfig) -> list[Need]:
        if config.decontamination is None:
            return []
        return [Inputs("curate.decontamination.eval_files", tuple(config.decontamination.eval_files))]

    @classmethod
    def from_config(cls, config: CurateConfig, *, run_dir: fsio.RunPath) -> DecontamStep | None:
        return None if config.decontamination is None else cls(config=config.decontamination)

    def settings(self) -> dict[str, Any]:
        from synthvlm.readers import UnreadableFileError, expand_inputs

        try:
            files = expand_inputs(self.config.eval_files)
        except UnreadableFileError as exc:
            raise UserError(f"curate.decontamination.eval_files: {exc}") from None
        # The evaluation files' bytes, not only their names, decide what is dropped.
        out = self.config.model_dump(exclude=OPERATIONAL)
        out["sha256"] = {f: _sha256(f) for f in files}
        return {"decontamination": out}

    def decide(self, table: pa.Table, plan: pa.Table | None = None) -> Decision:
        cfg = self.config
        index = registry.cached(
            "decontam",
            ("decontam", tuple(cfg.eval_files), cfg.format, cfg.ngram),
            lambda: EvalIndex.from_files(cfg.eval_files, n=cfg.ngram, fmt=cfg.format),
        )
        keep: list[bool] = []
        drops: list[Drop] = []
        for i, caption in enumerate(table.column("caption").to_pylist()):
            match = index.match(caption)
            bad = match is not None and match.overlap >= cfg.threshold
            keep.append(not bad)
            if bad:
                drops.append(Drop(i, "contaminated", value=match.overlap, detail=match.item.describe()))
        return Decision(keep, drops)
