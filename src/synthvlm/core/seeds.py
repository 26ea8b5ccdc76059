"""Deterministic seeds: every random choice derives from (run seed, stable id, candidate index, attempt)."""

from __future__ import annotations

import hashlib


def derive_seed(run_seed: int, caption_id: str, candidate_index: int, attempt: int = 0) -> int:
    """A 63-bit seed that depends only on its arguments (not on batch layout, worker or order)."""
    material = f"{run_seed}\x00{caption_id}\x00{candidate_index}\x00{attempt}".encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "little") >> 1


def derive_fraction(run_seed: int, caption_id: str, purpose: str) -> float:
    """A number in [0, 1) that depends only on its arguments: a per-caption draw for `purpose` (53 bits)."""
    material = f"{run_seed}\x00{caption_id}\x00{purpose}".encode()
    return (int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "little") >> 11) / 2.0**53
