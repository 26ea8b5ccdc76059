"""Balanced selection: k-means labels, sub-clusters, screened SemDeDup and the MetaCLIP cap, on small data."""

from __future__ import annotations

import numpy as np
import pytest

from synthvlm.select import balanced
from synthvlm.select.balanced import cluster, near_duplicates, quota_fill, subclusters


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


def _small_blocks(monkeypatch, *, sketch: bool) -> None:
    """Limits small enough that a few hundred rows take several row blocks, column chunks and confirmation
    chunks, and (with `sketch`) the sketch screen."""
    monkeypatch.setattr(balanced, "SKETCH_MIN_ROWS", 100 if sketch else 10**9)
    monkeypatch.setattr(balanced, "SKETCH_DIMS", 24)
    monkeypatch.setattr(balanced, "SKETCH_SAMPLE", 64)
    monkeypatch.setattr(balanced, "BLOCK_ROWS", 64)
    monkeypatch.setattr(balanced, "BLOCK_COLS", 100)
    monkeypatch.setattr(balanced, "CONFIRM_PAIRS", 7)


def _exhaustive(x: np.ndarray, order: np.ndarray, labels: np.ndarray, epsilon: float) -> np.ndarray:
    """The definition, unscreened: every pair of a group, better-ranked row first, by its exact cosine."""
    unit = balanced._unit(x)
    rank = np.empty(len(x), np.int64)
    rank[order] = np.arange(len(order))
    ranked = np.zeros(len(x), bool)
    ranked[order] = True
    i, j = np.nonzero(
        (rank[None, :] < rank[:, None])
        & (labels[None, :] == labels[:, None])
        & ranked[:, None]
        & ranked[None, :]
    )
    expected = np.zeros(len(x), bool)
    expected[i[balanced._cosines(unit, i, j) > np.float32(1 - epsilon)]] = True
    return expected


def _planted(n: int, d: int, epsilon: float, offsets, seed: int, span: int | None = None):
    """Rows with cosines ~0.5 inside a group, in the first `span` coordinates (all by default), and pairs
    (a, b) of one parity planted at cosine 1 - epsilon + offset each (in float64: the float32 rounding
    moves a cosine by ~1e-7)."""
    rng = np.random.default_rng(seed)
    span = span or d
    x = np.zeros((n, d))
    x[:, :span] = _clustered(n, span, 3, seed=seed, noise=1.0)
    ends = rng.permutation(n // 2)[: 2 * len(offsets)] * 2 + rng.integers(0, 2, 2 * len(offsets))
    pairs = []
    for (a, b), offset in zip(ends.reshape(-1, 2), offsets, strict=True):
        b += (a - b) % 2  # same parity as a: the same group when labels are index % 2
        u = np.zeros(d)
        u[:span] = rng.standard_normal(span)
        u -= (u @ x[a]) * x[a]
        cosine = 1 - epsilon + offset
        x[b] = cosine * x[a] + np.sqrt(1 - cosine**2) * u / np.linalg.norm(u)
        pairs.append((a, b))
    return x.astype(np.float32), np.array(pairs)


@pytest.mark.parametrize(("sketch", "span"), [(False, None), (True, None), (True, 16)])
def test_near_duplicates_planted_at_the_threshold(monkeypatch, sketch, span):
    # Pairs planted 3e-4 and 2e-3 above and below the threshold: the screen lets the close ones through to
    # the exact cosine (3e-4 is inside the sketch's margin), which keeps exactly the ones above. Rows in 16
    # of the 64 coordinates lie inside the sketch's basis: there its bound is the cosine itself.
    _small_blocks(monkeypatch, sketch=sketch)
    epsilon, offsets = 0.02, [3e-4, -3e-4, 2e-3, -2e-3] * 10
    x, pairs = _planted(900, 64, epsilon, offsets, seed=4, span=span)
    labels = np.arange(900) % 2  # two groups of 450 rows
    order = np.random.default_rng(5).permutation(900)
    dup = near_duplicates(x, order, labels, epsilon=epsilon)
    rank = np.empty(900, np.int64)
    rank[order] = np.arange(900)
    worse = np.where(rank[pairs[:, 0]] > rank[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
    above = np.array(offsets) > 0
    assert sorted(np.flatnonzero(dup)) == sorted(worse[above])
    assert dup.sum() == 20
    assert np.array_equal(dup, _exhaustive(x, order, labels, epsilon))


@pytest.mark.parametrize("epsilon", [0.02, 0.5, 0.7])
def test_near_duplicates_screen_never_changes_the_result(monkeypatch, epsilon):
    # Whatever the screen lets through, the answer is the exhaustive one: at epsilon 0.5 most pairs of a
    # group are candidates and many rows' best candidate fails its exact cosine.
    x, _ = _planted(600, 64, 0.02, [1e-3, -1e-3] * 15, seed=6)
    labels = np.arange(600) % 3
    order = np.random.default_rng(7).permutation(600)[:550]  # 50 unranked rows: never compared
    expected = _exhaustive(x, order, labels, epsilon)
    assert 0 < expected.sum() < 550
    for sketch in (False, True):
        _small_blocks(monkeypatch, sketch=sketch)
        assert np.array_equal(near_duplicates(x, order, labels, epsilon=epsilon), expected)


def test_sketch_bounds_every_cosine():
    # Rows of one cluster, and a group of few distinct rows (its sample spans three directions only).
    wide = balanced._unit(_clustered(1500, 128, 1, seed=8, noise=0.7))
    few = balanced._unit(np.repeat(np.random.default_rng(9).standard_normal((3, 128)), 200, axis=0))
    for x in (wide, few):
        sketch = balanced._sketch(x)
        assert sketch.shape[1] <= balanced.SKETCH_DIMS + 1
        cos = x.astype(np.float64) @ x.T.astype(np.float64)
        assert (sketch.astype(np.float64) @ sketch.T.astype(np.float64) - cos).min() > -1e-5
    # Tight enough to screen: cosines of the cluster reach 0.84, their bounds stay below 0.95.
    sketch = balanced._sketch(wide)
    bound = sketch @ sketch.T
    np.fill_diagonal(bound, 0)
    assert bound.max() < 0.95


# subclusters


def _sizes(fine: np.ndarray) -> list[int]:
    return sorted(np.bincount(fine[fine >= 0]).tolist())


def test_subclusters_bound_nesting_and_unranked_rows(monkeypatch):
    monkeypatch.setattr(balanced, "SUBCLUSTER_ROWS", 100)
    x = _clustered(1000, 32, 8, seed=10)
    labels = np.where(np.arange(1000) < 700, 5, 2)  # clusters of 700 and 300 rows
    order = np.random.default_rng(11).permutation(1000)[:950]
    fine = subclusters(x, order, labels, iterations=10, seed=0)
    assert fine.dtype == np.int32
    ranked = np.zeros(1000, bool)
    ranked[order] = True
    assert (fine[~ranked] == -1).all() and (fine[ranked] >= 0).all()
    sizes = _sizes(fine)
    assert max(sizes) <= 100 and sum(sizes) == 950
    assert len(sizes) >= sum(-(-np.bincount(labels[order]) // 100))  # at least ceil(n_c / 100) each
    assert sorted(set(fine[ranked].tolist())) == list(range(len(sizes)))
    for label in set(fine[ranked].tolist()):  # never across clusters
        assert len(set(labels[fine == label].tolist())) == 1


def test_subclusters_leave_small_clusters_whole_and_copies_together(monkeypatch):
    x = _clustered(400, 16, 4, seed=12)
    labels = np.arange(400) % 3
    order = np.arange(400)[::-1]
    fine = subclusters(x, order, labels, iterations=10, seed=0)
    assert _canonical(fine) == _canonical(labels)  # no cluster above SUBCLUSTER_ROWS: nothing split
    # 300 copies of one image: k-means cannot split them, and splitting would keep one copy of each piece.
    monkeypatch.setattr(balanced, "SUBCLUSTER_ROWS", 100)
    copies = np.repeat(x[:1], 300, axis=0)
    fine = subclusters(copies, np.arange(300), np.zeros(300, np.int32), iterations=10, seed=0)
    assert _sizes(fine) == [300]
    assert near_duplicates(copies, np.arange(300), fine, epsilon=0.01).sum() == 299


def test_subclusters_and_near_duplicates_seeded_counts(monkeypatch):
    # 3000 rows in two clusters, 120 exact copies planted (copies share every sub-cluster assignment):
    # each copy is dropped, and nothing else is within epsilon of anything.
    monkeypatch.setattr(balanced, "SUBCLUSTER_ROWS", 256)
    rng = np.random.default_rng(13)
    x = _clustered(3000, 32, 6, seed=13, noise=0.5)
    originals = rng.choice(3000, 120, replace=False)
    copies = rng.choice(np.setdiff1d(np.arange(3000), originals), 120, replace=False)
    x[copies] = x[originals]
    labels = cluster(x, clusters=2, iterations=10, seed=0)
    order = rng.permutation(3000)
    fine = subclusters(x, order, labels, iterations=10, seed=0)
    sizes = _sizes(fine)
    assert max(sizes) <= 256 and sum(sizes) == 3000
    assert len(sizes) >= 12  # ceil(3000 / 256)
    dup = near_duplicates(x, order, fine, epsilon=0.02)
    assert dup.sum() == 120
    rank = np.empty(3000, np.int64)
    rank[order] = np.arange(3000)
    assert sorted(np.flatnonzero(dup)) == sorted(np.where(rank[copies] > rank[originals], copies, originals))


def test_subclusters_and_near_duplicates_thread_count(monkeypatch):
    import faiss

    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(balanced, "SUBCLUSTER_ROWS", 300)
    x = _clustered(2500, 64, 5, seed=14, noise=0.6).astype(np.float16)
    labels = np.arange(2500) % 2
    order = np.random.default_rng(15).permutation(2500)
    results = []
    threads = faiss.omp_get_max_threads()
    try:
        for n in (1, 2):
            faiss.omp_set_num_threads(n)
            with threadpoolctl.threadpool_limits(n):
                fine = subclusters(x, order, labels, iterations=10, seed=3)
                results.append((fine, near_duplicates(x, order, fine, epsilon=0.1)))
    finally:
        faiss.omp_set_num_threads(threads)
    (fine1, dup1), (fine2, dup2) = results
    assert np.array_equal(fine1, fine2)
    assert np.array_equal(dup1, dup2)
    assert len(_sizes(fine1)) > 2 and 0 < dup1.sum()


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
