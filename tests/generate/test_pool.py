"""Mixed pools: the candidate-to-generator assignment (exact counts, stability, spread)."""

from __future__ import annotations

import numpy as np

from synthvlm.core.seeds import derive_fraction
from synthvlm.generate import pool

IDS = [f"cap-{i:04d}" for i in range(2000)]


def test_one_generator_takes_every_item():
    assert pool.assign(IDS[:3], candidates=2, shares=[1.0], run_seed=0).tolist() == [0] * 6


def test_n_equal_shares_and_n_candidates_give_each_caption_one_candidate_per_generator():
    assigned = pool.assign(IDS, candidates=4, shares=[0.25] * 4, run_seed=0).reshape(len(IDS), 4)
    assert (np.sort(assigned, axis=1) == np.arange(4)).all()


def test_shares_are_met_across_captions_and_items_follow_the_draw():
    assigned = pool.assign(IDS, candidates=1, shares=[0.5, 0.3, 0.2], run_seed=0)
    counts = np.bincount(assigned, minlength=3)
    assert counts.tolist() == [1015, 576, 409]  # 2000 draws: within 1.2 points of 50 / 30 / 20 %
    draws = [derive_fraction(0, cid, pool.PURPOSE) for cid in IDS[:5]]
    assert assigned[:5].tolist() == [0 if u < 0.5 else 1 if u < 0.8 else 2 for u in draws]


def test_the_assignment_depends_only_on_the_caption_id():
    whole = pool.assign(IDS, candidates=3, shares=[0.5, 0.5], run_seed=1).reshape(-1, 3)
    part = pool.assign(IDS[500:700], candidates=3, shares=[0.5, 0.5], run_seed=1).reshape(-1, 3)
    assert np.array_equal(whole[500:700], part)  # a sample (ingest.limit, a subset) keeps its generators
    other_seed = pool.assign(IDS, candidates=3, shares=[0.5, 0.5], run_seed=2).reshape(-1, 3)
    assert not np.array_equal(whole, other_seed)
    assert pool.items_of(np.array([1, 0, 1, 1]), 1).tolist() == [0, 2, 3]
