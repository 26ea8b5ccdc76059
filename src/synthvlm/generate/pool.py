"""Mixed candidate pools: which generator makes each candidate of each caption.

Plan item j is candidate j % N of caption j // N (N candidates per caption). With generators of shares
s_0..s_{G-1}, caption c draws u_c in [0, 1) from (run seed, caption id) and its candidate k goes to the
generator whose share interval of [0, 1) holds (u_c + k / N) mod 1. So each caption's candidates are spread
evenly over the generators (N = G with equal shares: one candidate each), across captions every generator
gets its share, and the assignment depends only on the caption's id, never on pool order or batching:
stable under resume, any executor and `ingest.limit`. Seeds stay (caption, candidate, attempt).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthvlm.core.seeds import derive_fraction

PURPOSE = "generator"
"""What the per-caption draw is for (keeps it independent of any other draw from the same caption)."""


def assign(
    caption_ids: Sequence[str], *, candidates: int, shares: Sequence[float], run_seed: int
) -> np.ndarray:
    """Generator index (into `shares`) of every plan item, in plan order: len(caption_ids) x candidates."""
    if len(shares) == 1:
        return np.zeros(len(caption_ids) * candidates, dtype=np.int32)
    draws = np.array([derive_fraction(run_seed, cid, PURPOSE) for cid in caption_ids], dtype=np.float64)
    offsets = np.arange(candidates, dtype=np.float64) / candidates
    positions = np.mod(draws[:, None] + offsets[None, :], 1.0).ravel()
    edges = np.cumsum(np.asarray(shares, dtype=np.float64))[:-1]
    return np.searchsorted(edges, positions, side="right").astype(np.int32)


def items_of(assignment: np.ndarray, generator: int) -> np.ndarray:
    """The plan items of one generator, in plan order."""
    return np.flatnonzero(assignment == generator)
