"""Exact caption dedup: captions equal after light normalisation share a 64-bit hash; the first one stays."""

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa

from synthvlm.config import CurateConfig
from synthvlm.core import fsio, schema
from synthvlm.steps.base import CurateStep, Decision, Drop, representative_plans

_WHITESPACE = re.compile(r"\s+")


@cache
def _punctuation_table() -> dict[int, None]:
    """``str.translate`` table deleting every code point of Unicode category P* (Pc Pd Pe Pf Pi Po Ps)."""
    return {c: None for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("P")}


def normalize(text: str) -> str:
    """Casefold, drop punctuation, collapse whitespace: captions differing only so count as duplicates."""
    return _WHITESPACE.sub(" ", text.casefold().translate(_punctuation_table())).strip()


def text_hashes(captions: Sequence[str]) -> np.ndarray:
    """uint64 per caption: the little-endian first 8 bytes of BLAKE2b-64 of its normalised UTF-8 text."""
    digests = b"".join(hashlib.blake2b(normalize(t).encode(), digest_size=8).digest() for t in captions)
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


class DedupStep(CurateStep):
    """Exact dedup over the whole pool: plans over the text hashes the rule-filter step wrote, then drops
    every caption whose normalised text appeared earlier in pool order."""

    name = "dedup"
    folder = "deduped"
    plan_columns = ("id", "text_hash")

    @classmethod
    def from_config(cls, config: CurateConfig, *, run_dir: fsio.RunPath) -> DedupStep | None:
        return cls() if config.dedup else None

    def settings(self) -> dict[str, Any]:
        return {}  # `dedup: true` is in the rule-filter step's settings, since it adds the hashes

    def plan(self, tables: Sequence[pa.Table]) -> list[pa.Table]:
        """First occurrence in pool order represents each normalised text; the rest point to it."""
        if not tables:
            return []
        hashes = np.concatenate([t.column("text_hash").to_numpy() for t in tables])
        ids = [v for t in tables for v in t.column("id").to_pylist()]
        _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        return representative_plans(tables, first[inverse], schema=schema.DEDUP_PLAN, dup_of={"dup_of": ids})

    def decide(self, table: pa.Table, plan: pa.Table | None = None) -> Decision:
        keep = plan.column("keep").to_pylist()
        dup_of = plan.column("dup_of").to_pylist()
        drops = [
            Drop(i, "duplicate_text", detail=f"duplicate of {dup_of[i]}") for i, k in enumerate(keep) if not k
        ]
        return Decision(keep, drops)

    def finish(self, kept: pa.Table) -> pa.Table:
        return kept.drop_columns(["text_hash"]).cast(schema.CAPTION)
