"""Near-duplicate captions: MinHash signatures, LSH banding, connected clusters; the first caption stays.

Signatures are datasketch's `MinHash` (its default `affine32` scheme: SHA-1 32-bit shingle hashes, the
MurmurHash3 finalizer, then `a*h + b mod 2^32` with datasketch's seeded permutations), computed for a whole
chunk of captions at once with NumPy instead of one `MinHash.update` per caption; tests check the values
are identical. The band/row split is datasketch's `MinHashLSH` optimum for the threshold (equal weights on
false positives and negatives). Captions that share any band are linked, and each connected cluster keeps
its first caption in pool order, as Data-Juicer's MinHash deduplicator does (candidates are not verified).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from synthvlm.config import CurateConfig, NearDupConfig
from synthvlm.core import fsio, schema
from synthvlm.core.needs import Extra, Need
from synthvlm.steps.base import OPERATIONAL, CurateStep, Decision, Drop, representative_plans
from synthvlm.steps.dedup import normalize

_CHUNK_SHINGLES = 1 << 17
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _missing_extra() -> ImportError:
    return ImportError("near-duplicate removal needs datasketch: pip install 'synthvlm[curate]'")


def lsh_params(*, threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) as datasketch's MinHashLSH picks them for this threshold and signature size."""
    try:
        from datasketch.lsh import _optimal_param
    except ImportError:
        raise _missing_extra() from None
    return tuple(int(v) for v in _optimal_param(threshold, num_perm, 0.5, 0.5))


def permutations(*, num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's uint32 (a, b) permutation parameters for this seed, so signatures match its MinHash."""
    try:
        from datasketch import MinHash
    except ImportError:
        raise _missing_extra() from None
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def shingles(text: str, *, unit: str, size: int) -> list[str]:
    """Distinct-or-not shingles of the normalised text; a text shorter than `size` is one shingle."""
    norm = normalize(text)
    if unit == "word":
        tokens = norm.split(" ") if norm else []
        if len(tokens) <= size:
            return [" ".join(tokens)]
        return [" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]
    if unit == "char":
        if len(norm) <= size:
            return [norm]
        return [norm[i : i + size] for i in range(len(norm) - size + 1)]
    raise ValueError(f"unknown shingle unit {unit!r}; valid: char, word")


def _fmix32(hv: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, datasketch's pre-mix of shingle hashes (wrapping uint32 arithmetic)."""
    with np.errstate(over="ignore"):
        hv = hv ^ (hv >> np.uint32(16))
        hv = hv * np.uint32(0x85EBCA6B)
        hv = hv ^ (hv >> np.uint32(13))
        hv = hv * np.uint32(0xC2B2AE35)
        return hv ^ (hv >> np.uint32(16))


def _sha1_32(shingle: str) -> int:
    return struct.unpack("<I", hashlib.sha1(shingle.encode("utf-8")).digest()[:4])[0]


def signatures(
    captions: Sequence[str], *, unit: str = "word", size: int = 3, num_perm: int = 128, seed: int = 1
) -> np.ndarray:
    """(len(captions), num_perm) uint32 MinHash signatures, equal to datasketch MinHash.hashvalues."""
    a, b = permutations(num_perm=num_perm, seed=seed)
    out = np.empty((len(captions), num_perm), dtype=np.uint32)
    start = 0
    while start < len(captions):
        hashes: list[int] = []
        offsets: list[int] = []
        stop = start
        while stop < len(captions) and len(hashes) < _CHUNK_SHINGLES:
            offsets.append(len(hashes))
            hashes.extend(_sha1_32(s) for s in shingles(captions[stop], unit=unit, size=size))
            stop += 1
        hv = _fmix32(np.asarray(hashes, dtype=np.uint32))[:, None]
        with np.errstate(over="ignore"):  # uint32 arithmetic wraps modulo 2^32, as in datasketch
            phv = hv * a + b
        out[start:stop] = np.minimum.reduceat(phv, np.asarray(offsets), axis=0)
        start = stop
    return out


def band_keys(sigs: np.ndarray, *, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: a 64-bit mix of each band's `rows` values (equal bands give equal keys)."""
    keys = np.zeros((sigs.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(rows):
            col = sigs[:, j : bands * rows : rows].astype(np.uint64) + np.uint64(j + 1) * _MIX[0]
            col ^= col >> np.uint64(30)
            col *= _MIX[1]
            col ^= col >> np.uint64(27)
            col *= _MIX[2]
            col ^= col >> np.uint64(31)
            keys = keys * _MIX[0] + col
    return keys


def cluster_roots(keys: np.ndarray) -> np.ndarray:
    """Per row, the smallest row index of its connected cluster (rows linked when any band key is equal)."""
    n = keys.shape[0]
    labels = np.arange(n, dtype=np.int64)
    if n == 0:
        return labels
    orders = [np.argsort(keys[:, j], kind="stable") for j in range(keys.shape[1])]
    starts = []
    for j, order in enumerate(orders):
        sorted_keys = keys[order, j]
        starts.append(np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]))
    while True:
        before = labels.copy()
        for order, first in zip(orders, starts, strict=True):
            group_min = np.minimum.reduceat(labels[order], first)
            sizes = np.diff(np.r_[first, n])
            labels[order] = np.repeat(group_min, sizes)
        while True:  # pointer jumping: follow labels to their root
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            return labels


def jaccard(a: str, b: str, *, unit: str, size: int) -> float:
    """Exact Jaccard similarity of two captions' shingle sets (what MinHash estimates)."""
    sa, sb = set(shingles(a, unit=unit, size=size)), set(shingles(b, unit=unit, size=size))
    return len(sa & sb) / len(sa | sb)


@dataclass(frozen=True)
class NearDupPlan:
    """Per caption: its cluster's representative index (itself when it is kept)."""

    representative: np.ndarray

    @property
    def keep(self) -> np.ndarray:
        return self.representative == np.arange(self.representative.shape[0])


def plan_near_duplicates(
    captions: Sequence[str],
    *,
    unit: str = "word",
    size: int = 3,
    num_perm: int = 128,
    threshold: float = 0.8,
    seed: int = 1,
) -> NearDupPlan:
    """Cluster captions by MinHash LSH; each cluster is represented by its first caption in this order."""
    bands, rows = lsh_params(threshold=threshold, num_perm=num_perm)
    keys = np.empty((len(captions), bands), dtype=np.uint64)
    step = 1 << 16  # signatures are built and reduced to band keys a chunk at a time: bounded memory
    for start in range(0, len(captions), step):
        sigs = signatures(captions[start : start + step], unit=unit, size=size, num_perm=num_perm, seed=seed)
        keys[start : start + step] = band_keys(sigs, bands=bands, rows=rows)
    return NearDupPlan(cluster_roots(keys))


@dataclass(frozen=True, kw_only=True)
class NearDupStep(CurateStep):
    """Near dedup over the whole pool: MinHash LSH clusters planned in one task, then dropped per shard with
    the exact Jaccard similarity to the cluster's representative as the value."""

    name = "neardup"
    folder = "neardup"
    plan_columns = ("id", "caption")

    config: NearDupConfig

    @classmethod
    def needs(cls, config: CurateConfig) -> list[Need]:
        if config.near_dup is None:
            return []
        return [Extra("curate.near_dup", ("datasketch",), "pip install 'synthvlm[curate]'")]

    @classmethod
    def from_config(cls, config: CurateConfig, *, run_dir: fsio.RunPath) -> NearDupStep | None:
        return None if config.near_dup is None else cls(config=config.near_dup)

    def settings(self) -> dict[str, Any]:
        return {"near_dup": self.config.model_dump(exclude=OPERATIONAL)}

    def plan(self, tables: Sequence[pa.Table]) -> list[pa.Table]:
        """Each cluster's first caption in pool order stays; the rest point to it and carry its caption."""
        cfg = self.config
        ids = [v for t in tables for v in t.column("id").to_pylist()]
        captions = [v for t in tables for v in t.column("caption").to_pylist()]
        plan = plan_near_duplicates(
            captions,
            unit=cfg.shingle,
            size=cfg.shingle_size,
            num_perm=cfg.num_perm,
            threshold=cfg.threshold,
            seed=cfg.seed,
        )
        return representative_plans(
            tables,
            plan.representative,
            schema=schema.NEARDUP_PLAN,
            dup_of={"dup_of": ids, "dup_of_caption": captions},
        )

    def decide(self, table: pa.Table, plan: pa.Table | None = None) -> Decision:
        cfg = self.config
        keep = plan.column("keep").to_pylist()
        dup_of = plan.column("dup_of").to_pylist()
        rep_caption = plan.column("dup_of_caption").to_pylist()
        captions = table.column("caption").to_pylist()
        drops = [
            Drop(
                i,
                "near_duplicate",
                value=jaccard(captions[i], rep_caption[i], unit=cfg.shingle, size=cfg.shingle_size),
                detail=f"cluster {dup_of[i]}",
            )
            for i, k in enumerate(keep)
            if not k
        ]
        return Decision(keep, drops)
