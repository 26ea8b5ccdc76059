"""Balanced selection: k-means labels, SemDeDup inside clusters, the MetaCLIP cap, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from synthvlm.select import balanced
from synthvlm.select.balanced import cluster, near_duplicates, quota_fill


def _unit(rows) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _canonical(labels: np.ndarray) -> list[int]:
    """Labels renumbered by first appearance: equal lists mean the same partition."""
    first = {}
    return [first.setdefault(int(v), len(first)) for v in labels]


def _angles(degrees) -> np.ndarray:
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return _unit(np.stack([np.cos(radians), np.sin(radians), np.zeros_like(radians)], axis=1))


def _clustered(n: int, d: int, groups: int, seed: int, noise: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, d))
    return _unit(centres[rng.integers(0, groups, n)] + noise * rng.standard_normal((n, d)))


# cluster


def test_cluster_two_tight_groups_and_stragglers():
    x = _unit(
        [
            [1, 0.01, 0, 0],
            [1, -0.01, 0, 0],
            [0, 0, 1, 0.01],
            [1, 0, 0.02, 0],
            [0, 0, 1, -0.01],
            [0.02, 0, 1, 0],
            [0, 1, 0, 1],  # stragglers, far from both groups and near each other
            [0, 1, 0, 0.9],
        ]
    )
    labels = cluster(x, clusters=3, iterations=10, seed=0)
    assert labels.dtype == np.int32
    assert _canonical(labels) == [0, 0, 1, 0, 1, 1, 2, 2]
    assert sorted(set(labels.tolist())) == [0, 1, 2]


def test_cluster_fewer_rows_than_clusters_and_none():
    x = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert sorted(cluster(x, clusters=5, iterations=5, seed=0).tolist()) == [0, 1, 2]
    empty = cluster(np.zeros((0, 8), np.float16), clusters=5, iterations=5, seed=0)
    assert empty.dtype == np.int32 and empty.shape == (0,)


def test_cluster_deterministic_float16_and_thread_count():
    import faiss

    x = _clustered(3000, 32, 6, seed=1)  # 3000 rows > 256 per cluster x 4: training samples
    first = cluster(x, clusters=4, iterations=8, seed=3)
    assert np.array_equal(first, cluster(x, clusters=4, iterations=8, seed=3))
    assert len(np.unique(first)) == 4
    half = x.astype(np.float16)
    threads = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        one = cluster(half, clusters=4, iterations=8, seed=3)
        faiss.omp_set_num_threads(2)
        two = cluster(half, clusters=4, iterations=8, seed=3)
    finally:
        faiss.omp_set_num_threads(threads)
    assert np.array_equal(one, two)


def test_cluster_assignment_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    x = _clustered(2000, 64, 10, seed=2)
    with threadpoolctl.threadpool_limits(1):
        one = cluster(x, clusters=10, iterations=5, seed=0)
    with threadpoolctl.threadpool_limits(2):
        two = cluster(x, clusters=10, iterations=5, seed=0)
    assert np.array_equal(one, two)


# near_duplicates


def test_near_duplicates_keep_the_best_ranked_of_each_pair():
    x = _unit([[1, 0, 0], [1, 0.03, 0], [0, 1, 0], [0, 1, 0.02], [0.6, 0.8, 0]])
    labels = np.array([0, 0, 1, 1, 0])
    order = np.array([1, 0, 3, 2, 4])  # row 1 outranks row 0, row 3 outranks row 2
    dup = near_duplicates(x, order, labels, epsilon=0.01)
    assert dup.tolist() == [True, False, True, False, False]


def test_near_duplicates_only_inside_a_cluster():
    x = _unit([[1, 0, 0], [1, 0.03, 0], [0, 1, 0]])
    dup = near_duplicates(x, np.array([0, 1, 2]), np.array([0, 1, 1]), epsilon=0.01)
    assert dup.tolist() == [False, False, False]


def test_near_duplicates_compare_with_dropped_rows_too():
    # 0, 6 and 12 degrees: cos 6 = 0.9945 > 0.99, cos 12 = 0.978 < 0.99. Row 2 is a near-duplicate of
    # row 1 only, which is itself dropped; SemDeDup's rule still drops row 2.
    x = _angles([0, 6, 12])
    dup = near_duplicates(x, np.array([0, 1, 2]), np.zeros(3, np.int32), epsilon=0.01)
    assert dup.tolist() == [False, True, True]
    # Ranked the other way round, the middle row is dropped, as a near-duplicate of row 2 and row 0.
    dup = near_duplicates(x, np.array([2, 0, 1]), np.zeros(3, np.int32), epsilon=0.01)
    assert dup.tolist() == [False, True, False]


def test_near_duplicates_exact_copies_and_epsilon_zero():
    x = _unit([[0.3, 0.4, 0.5], [0.3, 0.4, 0.5], [0.3, 0.4, 0.5], [1, 0, 0]]).astype(np.float16)
    labels = np.zeros(4, np.int32)
    order = np.array([2, 0, 1, 3])
    assert near_duplicates(x, order, labels, epsilon=1e-6).tolist() == [True, True, False, False]
    assert near_duplicates(x, order, labels, epsilon=0.0).tolist() == [False, False, False, False]


def test_near_duplicates_unranked_rows_and_empty():
    x = _unit([[1, 0, 0], [1, 0.01, 0], [1, 0.02, 0]])
    # Row 0 is not ranked (say, not its caption's best): never compared, never flagged.
    assert near_duplicates(x, np.array([2, 1]), np.zeros(3), epsilon=0.01).tolist() == [False, True, False]
    none = near_duplicates(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), np.zeros(0), epsilon=0.1)
    assert none.shape == (0,)


def test_near_duplicates_sketch_screen_and_blocks_match_the_full_matrix(monkeypatch):
    # Small limits so that 900 rows take the sketch screen, several row blocks and column chunks.
    monkeypatch.setattr(balanced, "SKETCH_MIN_ROWS", 100)
    monkeypatch.setattr(balanced, "SKETCH_DIMS", 24)
    monkeypatch.setattr(balanced, "BLOCK_ROWS", 64)
    monkeypatch.setattr(balanced, "BLOCK_COLS", 100)
    rng = np.random.default_rng(5)
    n, d = 900, 64
    x = _clustered(n, d, 3, seed=4, noise=1.0)  # cosines ~0.5 inside a group
    copies = rng.choice(n, 60, replace=False)
    x[copies] = _unit(x[rng.choice(n, 60)] + 0.01 * rng.standard_normal((60, d)))
    labels = np.arange(n) % 2  # two clusters of 450 rows
    order = rng.permutation(n)
    epsilon = 0.02
    dup = near_duplicates(x, order, labels, epsilon=epsilon)

    # Reference: the full cosine matrix, each row against the better-ranked rows of its cluster.
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    cos = x @ x.T
    eligible = (rank[None, :] < rank[:, None]) & (labels[None, :] == labels[:, None])
    assert np.abs(cos[eligible] - np.float32(1 - epsilon)).min() > 1e-4  # no tie the rounding could flip
    expected = (np.where(eligible, cos, -np.inf) > np.float32(1 - epsilon)).any(axis=1)
    assert 20 < expected.sum() < 60
    assert np.array_equal(dup, expected)
    # The screen passed some rows on to the full products and settled the rest.
    members = order[labels[order] == 0]
    unit = balanced._unit(x[members])
    checked = balanced._earlier_max(balanced._sketch(unit), np.arange(len(members)))
    passed = np.count_nonzero(checked > np.float32(1 - epsilon) - balanced.SKETCH_MARGIN)
    assert 0 < passed < len(members) // 2


# quota_fill


def test_quota_fill_cap_by_hand():
    # Sizes 10, 3, 1 and k = 8: t = 3 gives 3 + 3 + 1 = 7 < 8, t = 4 gives 4 + 3 + 1 = 8.
    labels = np.array([0, 0, 1, 0, 2, 0, 0, 1, 0, 0, 1, 0, 0, 0])
    chosen = quota_fill(labels, 8)
    assert chosen.tolist() == [1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0]
    assert np.bincount(labels[chosen]).tolist() == [4, 3, 1]


def test_quota_fill_more_than_k_at_the_cap_keeps_the_best_ranked():
    # Sizes 5, 5, 5 and k = 7: t = 3 gives 9 rows; the 7 best-ranked of them are kept.
    labels = np.repeat([0, 1, 2], 5)
    chosen = quota_fill(labels, 7)
    assert chosen.tolist() == [1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0]


def test_quota_fill_everything_nothing_and_empty():
    labels = np.array([3, 3, 1])
    assert quota_fill(labels, 3).tolist() == [True, True, True]
    assert quota_fill(labels, 10).tolist() == [True, True, True]
    assert quota_fill(labels, 0).tolist() == [False, False, False]
    assert quota_fill(np.zeros(0, np.int32), 5).shape == (0,)


def test_quota_fill_one_cluster_is_top_k():
    assert quota_fill(np.full(6, 4), 4).tolist() == [1, 1, 1, 1, 0, 0]


def test_quota_fill_ignores_label_values():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 500)
    chosen = quota_fill(labels, 123)
    assert chosen.sum() == 123
    relabel = np.array([12, -3, 5, 0, 99, 7, 40])  # a one-to-one renaming of the seven clusters
    assert np.array_equal(quota_fill(relabel[labels], 123), chosen)
    assert np.array_equal(quota_fill(labels.astype(np.int64) + 2**40, 123), chosen)
