"""Coverage-aware selection: k-means clusters of the image embeddings, near-duplicate images dropped inside
each cluster (SemDeDup, arXiv 2303.09540), then a cap per cluster (MetaCLIP, arXiv 2309.16671) so that no
cluster crowds the others out of the top K. Rules: docs/metrics.md, "Balanced selection".
"""

from __future__ import annotations

import numpy as np

from synthvlm.core.errors import UserError

TRAIN_ROWS_PER_CLUSTER = 256
"""k-means trains on a seeded sample of this many rows per cluster (faiss' own default cap): centroids of
1M rows barely move beyond it, and training then costs the same at any n."""
ASSIGN_ROWS = 32_768
"""Rows converted to float32 and assigned to centroids at a time."""
BLOCK_ROWS = 1024
BLOCK_COLS = 16_384
"""A block of cosines is at most BLOCK_ROWS x BLOCK_COLS float32 (64 MiB), however large a cluster is."""
SKETCH_MIN_ROWS = 4096
"""Clusters from this size on are screened by a sketch first (when rows have over twice the sketch's terms);
smaller ones cost little even in full."""
SKETCH_DIMS = 127
"""With the rest's norm, 128 terms per row: BLAS runs 65 terms no faster than 128 (measured), and the
bound is tighter."""
SKETCH_MARGIN = 1e-3
"""A row is checked in full when its sketch bound comes within this of the threshold: far above the
float32 rounding of a 128-term dot product (~1e-5), so the screen never hides a duplicate."""


def cluster(image_emb: np.ndarray, *, clusters: int, iterations: int, seed: int) -> np.ndarray:
    """k-means labels (int32, 0 .. min(clusters, n) - 1) of L2-normalised rows, by faiss' spherical k-means.

    Spherical, as SemDeDup does: centroids are renormalised every iteration and rows go to the centroid
    of highest inner product, i.e. cosine. Training uses a seeded sample of at most TRAIN_ROWS_PER_CLUSTER
    rows per cluster; then every row is assigned in blocks, so no float32 copy of the whole matrix is made.
    faiss splits the centroid update by centroid and assigns by per-element products, so the labels do not
    depend on the thread count (tested); argmax ties go to the lowest centroid.
    """
    try:
        import faiss
    except ImportError:
        raise UserError("select.strategy balanced needs faiss: pip install 'synthvlm[select]'") from None
    n, d = image_emb.shape
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    k = min(clusters, n)
    rng = np.random.default_rng(seed)
    m = min(n, TRAIN_ROWS_PER_CLUSTER * k)
    sample = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    train = np.ascontiguousarray(image_emb[sample], dtype=np.float32)
    kmeans = faiss.Kmeans(
        d,
        k,
        niter=iterations,
        seed=seed,
        spherical=True,
        max_points_per_centroid=m,  # sampled above; faiss must not sample again
        min_points_per_centroid=1,  # n < 39 * k is allowed (faiss would only warn)
    )
    kmeans.train(train)
    centroids = kmeans.centroids.T.copy()
    labels = np.empty(n, dtype=np.int32)
    for start in range(0, n, ASSIGN_ROWS):
        block = np.asarray(image_emb[start : start + ASSIGN_ROWS], dtype=np.float32)
        labels[start : start + len(block)] = np.argmax(block @ centroids, axis=1)
    return labels


def near_duplicates(
    image_emb: np.ndarray, order: np.ndarray, labels: np.ndarray, *, epsilon: float
) -> np.ndarray:
    """Per row: is its cosine to some better-ranked row (earlier in `order`) of its cluster above 1 - epsilon?

    SemDeDup's rule: a row is compared with every better-ranked row of its cluster, dropped or not, so the
    result does not depend on the order rows are visited in, and within each group of near-duplicates the
    best-ranked row is kept. Rows not in `order` are False. Cosines are float32 products of the rows
    renormalised in float32 (float16 storage leaves norms 1 +- 1e-3, which matters for small epsilon);
    epsilon 0 drops nothing, since a cosine never exceeds 1. Clusters go one at a time, in blocks of
    BLOCK_ROWS x BLOCK_COLS, never as an n x n or cluster x cluster matrix.
    """
    duplicate = np.zeros(len(image_emb), dtype=bool)
    if epsilon == 0 or len(order) == 0:
        return duplicate
    threshold = np.float32(1 - epsilon)
    ranked_labels = labels[order]
    by_cluster = np.argsort(ranked_labels, kind="stable")  # stable: rank order inside each cluster
    members = order[by_cluster]
    starts = np.flatnonzero(np.diff(ranked_labels[by_cluster])) + 1
    for rows in np.split(members, starts):
        if len(rows) > 1:
            duplicate[rows] = _dominated(_unit(image_emb[rows]), threshold)
    return duplicate


def quota_fill(labels_in_rank_order: np.ndarray, k: int) -> np.ndarray:
    """Which of the ranked rows are selected: the best min(n_c, t) of each cluster, t the smallest cap with
    sum_c min(n_c, t) >= k; when that gives more than k rows, the k best-ranked of them.

    MetaCLIP's balancing: big clusters are capped, small ones kept whole, and the cap is as high as k
    allows. The result depends only on which ranked rows share a cluster, not on the label values.
    """
    n = len(labels_in_rank_order)
    if k >= n:
        return np.ones(n, dtype=bool)
    _, cluster_of, sizes = np.unique(labels_in_rank_order, return_inverse=True, return_counts=True)
    cap = _cap(sizes, k)
    by_cluster = np.argsort(cluster_of, kind="stable")  # stable: rank order inside each cluster
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    within = np.empty(n, dtype=np.int64)
    within[by_cluster] = np.arange(n) - np.repeat(starts, sizes)
    chosen = within < cap
    chosen &= np.cumsum(chosen) <= k
    return chosen


def _cap(sizes: np.ndarray, k: int) -> int:
    """Smallest t with sum(min(sizes, t)) >= k, by bisection over 0 .. max(sizes)."""
    low, high = 0, int(sizes.max())
    while low < high:
        mid = (low + high) // 2
        if int(np.minimum(sizes, mid).sum()) >= k:
            high = mid
        else:
            low = mid + 1
    return low


def _unit(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _dominated(x: np.ndarray, threshold: np.float32) -> np.ndarray:
    """For each row of a cluster (rank order): does an earlier row have a cosine above `threshold`?

    Large clusters cost m^2/2 products of d terms; a sketch of SKETCH_DIMS + 1 terms per row whose products
    bound the cosines from above screens out the rows that cannot have a near-duplicate, and only the rest
    are computed in full. The answer is the full computation's either way.
    """
    check = np.arange(len(x))
    if len(x) >= SKETCH_MIN_ROWS and x.shape[1] > 2 * (SKETCH_DIMS + 1):  # else the screen saves little
        sketch = _sketch(x)
        check = check[_earlier_max(sketch, check) > threshold - SKETCH_MARGIN]
    dominated = np.zeros(len(x), dtype=bool)
    dominated[check] = _earlier_max(x, check) > threshold
    return dominated


def _sketch(x: np.ndarray) -> np.ndarray:
    """Rows as (coordinates in a SKETCH_DIMS-dim orthonormal basis P, norm of the rest): for unit rows,
    x_i . x_j = P x_i . P x_j + r_i . r_j <= P x_i . P x_j + |r_i| |r_j|, so sketch products bound cosines.

    Any orthonormal basis gives a valid bound; the cluster's leading directions (a few rounds of subspace
    iteration on a sample, seed fixed) make it tight.
    """
    sample = x[:: max(1, len(x) // 2048)].astype(np.float64)
    basis = np.random.default_rng(0).standard_normal((x.shape[1], SKETCH_DIMS))
    for _ in range(3):
        basis = sample.T @ (sample @ basis)
        # Cholesky QR, in float64: one 128 x 128 factorisation (LAPACK's QR was slow under load).
        basis = basis @ np.linalg.inv(np.linalg.cholesky(basis.T @ basis)).T
    basis = basis.astype(np.float32)
    coords = x @ basis
    rest = np.linalg.norm(x - coords @ basis.T, axis=1)
    return np.hstack([coords, rest[:, None]])


def _earlier_max(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of `rows` (ascending): the largest product of its row with an earlier row (-inf for row 0)."""
    best = np.full(len(rows), -np.inf, dtype=np.float32)
    for b in range(0, len(rows), BLOCK_ROWS):
        block = rows[b : b + BLOCK_ROWS]
        queries = x[block]
        for c0 in range(0, int(block[-1]), BLOCK_COLS):
            c1 = min(c0 + BLOCK_COLS, int(block[-1]))
            products = queries @ x[c0:c1].T
            if c1 > block[0]:  # this chunk reaches the block's own rows: only earlier columns count
                lo = max(c0, int(block[0]))
                tail = products[:, lo - c0 :]
                tail[np.arange(lo, c1)[None, :] >= block[:, None]] = -np.inf
            np.maximum(best[b : b + len(block)], products.max(axis=1), out=best[b : b + len(block)])
    return best
