"""Coverage-aware selection: k-means clusters of the image embeddings, near-duplicate images dropped inside
sub-clusters of each cluster (SemDeDup, arXiv 2303.09540), then a cap per cluster (MetaCLIP, arXiv
2309.16671) so that no cluster crowds the others out of the top K. Rules: docs/metrics.md, "Balanced
selection".
"""

from __future__ import annotations

import numpy as np

from synthvlm.core.errors import UserError

TRAIN_ROWS_PER_CLUSTER = 256
"""k-means trains on a seeded sample of this many rows per cluster (faiss' own default cap): centroids of
1M rows barely move beyond it, and training then costs the same at any n."""
ASSIGN_ROWS = 32_768
"""Rows converted to float32 and assigned to centroids at a time."""
SUBCLUSTER_ROWS = 8192
"""SemDeDup compares rows only inside sub-clusters of at most this many rows, as the paper does at its own
scale (LAION-440M in 50,000 clusters, ~9,000 rows each): the work then grows as n x SUBCLUSTER_ROWS, not
as the sum of squared cluster sizes, and few near-duplicate pairs straddle a sub-cluster boundary
(docs/metrics.md)."""
BLOCK_ROWS = 1024
BLOCK_COLS = 16_384
"""A block of screen products is at most BLOCK_ROWS x BLOCK_COLS float32 (64 MiB), however big a group is."""
SKETCH_MIN_ROWS = 1024
"""Groups from this size on are screened by a sketch (when rows have over twice the sketch's terms); in
smaller ones the sketch's basis costs about what it saves."""
SKETCH_DIMS = 63
"""With the rest's norm, 64 terms per row, an eighth of 512. On the benchmark's 1M rows (one thread), rows
let through to the exact cosines per true near-duplicate row, and seconds: 63 dims 1.46, 17.9 s; 95 dims
1.00, 17.5 s; 127 dims 1.00, 21.4 s; 31 dims 20, 51.9 s."""
SKETCH_SAMPLE = 1024
"""The sketch's basis is fitted on at most this many rows of the group (every k-th)."""
SKETCH_MARGIN = 1e-3
"""A pair is a candidate when its sketch bound comes within this of the threshold: far above the rounding
of the sketch (~1e-6, see `_sketch`) and of a 512-term float32 cosine (~3e-5), so no duplicate is missed."""
CONFIRM_PAIRS = 8192
"""Candidate pairs gathered and confirmed at a time (two 8192 x 512 float32 copies, 32 MiB)."""


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


def subclusters(
    image_emb: np.ndarray, order: np.ndarray, labels: np.ndarray, *, iterations: int, seed: int
) -> np.ndarray:
    """Sub-cluster labels (int32; -1 for rows not in `order`): every cluster of the ranked rows split by
    spherical k-means until no part has more than SUBCLUSTER_ROWS rows, so that SemDeDup's pairwise work
    grows as n x SUBCLUSTER_ROWS, not as the sum of squared cluster sizes.

    A part of m > SUBCLUSTER_ROWS rows is split by `cluster` (same iterations and seed, its rows in rank
    order) into ceil(2 m / SUBCLUSTER_ROWS) parts, half the bound on average since k-means parts are
    uneven; a part still above the bound is split again. Sub-clusters never cross clusters, and their
    labels do not depend on the thread count, as `cluster`'s do not. A part that k-means cannot split
    (every row nearest one centroid: copies of one image) stays whole, since splitting copies would keep
    one of each piece.
    """
    fine = np.full(len(image_emb), -1, dtype=np.int32)
    count = 0
    for rows in _groups(order, labels):
        pending = [rows]
        while pending:
            part = pending.pop()
            if len(part) > SUBCLUSTER_ROWS:
                k = -(-2 * len(part) // SUBCLUSTER_ROWS)
                split = cluster(image_emb[part], clusters=k, iterations=iterations, seed=seed)
                pieces = [part[p] for p in _groups(np.arange(len(part)), split)]
                if len(pieces) > 1:
                    pending.extend(reversed(pieces))  # depth first, in label order
                    continue
            fine[part] = count
            count += 1
    return fine


def near_duplicates(
    image_emb: np.ndarray, order: np.ndarray, labels: np.ndarray, *, epsilon: float
) -> np.ndarray:
    """Per row: is its cosine to some better-ranked row (earlier in `order`) of its group (same label)
    above 1 - epsilon? The select stage's groups are `subclusters`.

    SemDeDup's rule: a row is compared with every better-ranked row of its group, dropped or not, so the
    result does not depend on the order rows are visited in, and within each group of near-duplicates the
    best-ranked row is kept. Rows not in `order` are False. A pair's cosine is the float32 product of its
    rows renormalised in float32 (float16 storage leaves norms 1 +- 1e-3, which matters for small
    epsilon), summed in one fixed order (`_cosines`), so the answer depends neither on BLAS nor on the
    thread count; epsilon 0 drops nothing, since a cosine never exceeds 1. Groups go one at a time, in
    blocks of BLOCK_ROWS x BLOCK_COLS, never as an n x n or group x group matrix.
    """
    duplicate = np.zeros(len(image_emb), dtype=bool)
    if epsilon == 0 or len(order) == 0:
        return duplicate
    threshold = np.float32(1 - epsilon)
    for rows in _groups(order, labels):
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


def _groups(order: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """The rows of `order` split by label (groups in label order), each group in rank order."""
    ranked_labels = labels[order]
    by_label = np.argsort(ranked_labels, kind="stable")  # stable: rank order inside each group
    starts = np.flatnonzero(np.diff(ranked_labels[by_label])) + 1
    return np.split(order[by_label], starts)


def _unit(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _dominated(x: np.ndarray, threshold: np.float32) -> np.ndarray:
    """For each row of a group (rank order): is its cosine to an earlier row above `threshold`?

    A screen finds the candidate pairs cheaply: the products of a sketch of SKETCH_DIMS + 1 terms per row,
    which bound the cosines from above (groups from SKETCH_MIN_ROWS rows on), else the float32 matrix
    products themselves. A pair is a candidate when its screen value comes within the screen's margin of
    the threshold, a margin larger than any rounding of the screen, so no pair above the threshold is
    missed; candidates are then confirmed by their exact cosines (`_confirmed`). The screen only decides
    which cosines are computed exactly, never the answer.
    """
    m, d = x.shape
    sketched = m >= SKETCH_MIN_ROWS and d > 2 * (SKETCH_DIMS + 1)
    screen = _sketch(x) if sketched else x
    floor = np.float32(threshold - np.float32(SKETCH_MARGIN if sketched else _product_margin(d)))
    columns = np.ascontiguousarray(screen.T)  # its own buffer: numpy sends x @ x.T to syrk, slower here
    diagonal = min(BLOCK_ROWS, m)
    upper = np.triu(np.full((diagonal, diagonal), -np.inf, dtype=np.float32))  # column >= row: not earlier
    dominated = np.zeros(m, dtype=bool)
    for r0 in range(0, m, BLOCK_ROWS):
        r1 = min(r0 + BLOCK_ROWS, m)
        for c0 in range(0, r1 - 1, BLOCK_COLS):  # the block's last row compares with rows up to r1 - 2
            c1 = min(c0 + BLOCK_COLS, r1 - 1)
            products = screen[r0:r1] @ columns[:, c0:c1]
            if c1 > r0:  # this chunk reaches the block's own rows: only earlier columns count
                lo = max(c0, r0)
                products[:, lo - c0 :] += upper[: r1 - r0, lo - r0 : c1 - r0]
            rows = np.flatnonzero((products.max(axis=1) > floor) & ~dominated[r0:r1])
            if len(rows):
                found = _confirmed(x, products[rows], r0 + rows, c0, floor, threshold, sketched=sketched)
                dominated[r0 + rows] = found
    return dominated


def _product_margin(d: int) -> float:
    """How far a BLAS float32 product of unit rows can be from the exact cosine: each is within d * 2^-24
    of the true product whatever the summation order, so they differ by at most twice that; thrice
    covers the rounding of the norms."""
    return 3 * d * 2.0**-24


def _confirmed(
    x: np.ndarray,
    products: np.ndarray,
    rows: np.ndarray,
    c0: int,
    floor: np.float32,
    threshold: np.float32,
    *,
    sketched: bool,
) -> np.ndarray:
    """For each of `rows` (screen values `products` against the columns from c0 on): does a candidate
    have an exact cosine above `threshold`?

    Each row's best candidate first, which settles nearly every duplicate whatever epsilon. For the rest,
    every candidate: after a sketch, first narrowed by the rows' float32 products (as tight as the exact
    cosines, but at BLAS speed), so that a loose sketch costs what no screen would, never more.
    """
    first = products.argmax(axis=1)
    found = _cosines(x, rows, c0 + first) > threshold
    rest = np.flatnonzero(~found)
    if len(rest):
        products = products[rest]
        if sketched:
            c1 = c0 + products.shape[1]
            products = x[rows[rest]] @ x[c0:c1].T
            products[np.arange(c0, c1)[None, :] >= rows[rest][:, None]] = -np.inf
            floor = np.float32(threshold - np.float32(_product_margin(x.shape[1])))
        i, j = np.nonzero(products > floor)
        found[rest[i[_cosines(x, rows[rest[i]], c0 + j) > threshold]]] = True
    return found


def _cosines(x: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """x_i . x_j for each pair, in float32, summed in NumPy's fixed einsum order (no BLAS, no threads), so a
    pair's cosine is the same however it was found."""
    out = np.empty(len(i), dtype=np.float32)
    for s in range(0, len(i), CONFIRM_PAIRS):
        out[s : s + CONFIRM_PAIRS] = np.einsum(
            "ij,ij->i", x[i[s : s + CONFIRM_PAIRS]], x[j[s : s + CONFIRM_PAIRS]]
        )
    return out


def _sketch(x: np.ndarray) -> np.ndarray:
    """Unit rows as (coordinates in an orthonormal basis P of at most SKETCH_DIMS columns, norm of the
    rest), float32: for unit rows x_i . x_j = P x_i . P x_j + r_i . r_j <= P x_i . P x_j + |r_i| |r_j|, so
    sketch products bound cosines from above.

    Any orthonormal basis gives a valid bound; the group's leading directions (two rounds of subspace
    iteration on a sample of at most SKETCH_SAMPLE rows, seed fixed) make it tight. The basis is made
    orthonormal and the coordinates computed in float64, so the bound holds to ~1e-6 (float32 storage of
    the sketch), far inside SKETCH_MARGIN.
    """
    sample = x[:: -(-len(x) // SKETCH_SAMPLE)]
    basis = np.random.default_rng(0).standard_normal((x.shape[1], SKETCH_DIMS)).astype(np.float32)
    for _ in range(2):  # the span is what counts: orthonormalised once, after both rounds
        basis = sample.T @ (sample @ basis)
    wide = x.astype(np.float64)
    coords = wide @ _orthonormal(basis)
    rest = np.einsum("ij,ij->i", wide, wide) - np.einsum("ij,ij->i", coords, coords)
    return np.hstack([coords, np.sqrt(np.maximum(rest, 0))[:, None]]).astype(np.float32)


def _orthonormal(a: np.ndarray) -> np.ndarray:
    """Orthonormal float64 columns spanning a's columns, by Gram-Schmidt with every column orthogonalised
    twice (orthonormal to ~1e-15); a column with under 1e-9 of its norm left is dropped (a sample of copies
    spans few directions). The small products go through einsum, not BLAS: LAPACK's factorisations and
    BLAS' threaded matrix-vector products of this size took up to 100x longer on busy cores, their
    threads waiting for each other."""
    q = np.empty((a.shape[1], a.shape[0]), dtype=np.float64)  # basis vectors as rows: contiguous for einsum
    kept = 0
    for column in a.T.astype(np.float64):
        norm = np.sqrt(column @ column)
        for _ in range(2):
            column -= np.einsum("ij,i->j", q[:kept], np.einsum("ij,j->i", q[:kept], column))
        left = np.sqrt(column @ column)
        if left > 1e-9 * norm:
            q[kept] = column / left
            kept += 1
    return q[:kept].T
