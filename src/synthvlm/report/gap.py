"""Distribution-gap metrics between a selected synthetic set and a real reference set, on CLIP embeddings.

Pure numpy (scikit-learn only for the 2-D map): CMMD (Jayasumana et al. 2024), PRDC (Naeem et al. 2020) and
a PCA map. Every pairwise computation runs in blocks of `chunk` x `chunk`, so no n x m matrix is ever held.
"""

from __future__ import annotations

import math

import numpy as np

# CMMD's inputs are CLIP embeddings scaled to unit length (as in the authors' code); |norm - 1| above this
# means the caller passed raw embeddings, for which sigma = 10 is not the paper's bandwidth.
UNIT_NORM_TOLERANCE = 1e-3
# Taylor terms of the kernel remainder are kept until the neglected part per pair is below this: far under
# the float32 rounding of the remainder itself (~1e-14), and under float64 resolution of the kernel (~1).
_REMAINDER_TOLERANCE = 1e-16


def _features(a: np.ndarray, name: str) -> np.ndarray:
    """A 2-D array of finite floats, or a ValueError naming `name`."""
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (points x dimensions), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold numbers, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _same_width(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} must have the same dimension, got {a.shape[1]} and {b.shape[1]}")


def _slices(n: int, chunk: int) -> list[slice]:
    return [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]


def _check_chunk(chunk: int) -> None:
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk}")


# --------------------------------------------------------------------------------------------------- CMMD


def _kernel_moments(
    a: np.ndarray, gamma: float, chunk: int
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Per-point weights w_i = exp(-gamma |a_i|^2) and the weighted means of 1, a_i and a_i a_i^T (float64).

    exp(-gamma |a - b|^2) = w_a w_b exp(2 gamma a.b), so the kernel means of the first three Taylor terms of
    exp(2 gamma a.b) are inner products of these means: O(n d^2) instead of O(n^2 d).
    """
    n, d = a.shape
    w = np.empty(n)
    first = np.zeros(d)
    second = np.zeros((d, d))
    for s in _slices(n, chunk):
        block = a[s].astype(np.float64)
        w[s] = np.exp(-gamma * np.einsum("ij,ij->i", block, block))
        first += w[s] @ block
        second += (block * w[s, None]).T @ block
    return w, math.fsum(w) / n, first / n, second / n


def _remainder_coefficients(c: float, t_max: float) -> np.ndarray:
    """c^p / p! for p = 3..P, P the first order whose neglected tail is below _REMAINDER_TOLERANCE."""
    coefficients = []
    p = 3
    while True:
        coefficients.append(c**p / math.factorial(p))
        tail = 4.0 * math.exp(t_max) * t_max ** (p + 1) / math.factorial(p + 1)
        if tail <= _REMAINDER_TOLERANCE:
            return np.array(coefficients, dtype=np.float32)
        p += 1


def _remainder_sum(
    a: np.ndarray,
    wa: np.ndarray,
    b: np.ndarray,
    wb: np.ndarray,
    coefficients: np.ndarray,
    chunk: int,
    symmetric: bool,
) -> float:
    """sum_ij wa_i wb_j r(a_i.b_j), r(g) = sum_{p>=3} c^p g^p / p!, in chunk x chunk float32 blocks.

    r is below ~2e-7 per pair at the paper's sigma, so float32 inner products (error ~1e-7 in g) change it by
    ~1e-14: the blocked sums stay far more precise than an all-float32 evaluation of the whole kernel.
    With symmetric (a is b), only blocks on or above the diagonal are computed, the others counted twice.
    """
    wb32 = wb.astype(np.float32)
    buf_g = np.empty(chunk * chunk, dtype=np.float32)
    buf_q = np.empty(chunk * chunk, dtype=np.float32)
    total = 0.0
    rows, cols = _slices(len(a), chunk), _slices(len(b), chunk)
    for i, si in enumerate(rows):
        for j, sj in enumerate(cols):
            if symmetric and j < i:
                continue
            h, w = si.stop - si.start, sj.stop - sj.start
            g = buf_g[: h * w].reshape(h, w)
            q = buf_q[: h * w].reshape(h, w)
            np.matmul(a[si], b[sj].T, out=g)
            # Horner in g for sum_p coefficient_p g^(p-3), then times g^3.
            np.multiply(g, coefficients[-1], out=q)
            for coefficient in coefficients[-2::-1]:
                q += coefficient
                q *= g
            q *= g
            q *= g
            part = float(wa[si] @ (q @ wb32[sj]).astype(np.float64))
            total += part if not symmetric or i == j else 2.0 * part
    return total


def _unit_rows(a: np.ndarray, name: str) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64))
    worst = float(np.max(np.abs(norms - 1.0)))
    if worst > UNIT_NORM_TOLERANCE:
        raise ValueError(
            f"{name} must hold unit-length rows (CLIP embeddings divided by their L2 norm, as CMMD defines "
            f"them); a row's norm is off by {worst:.3g}: normalise with a / np.linalg.norm(a, axis=1, "
            "keepdims=True) first"
        )
    return a


def cmmd(
    x: np.ndarray, y: np.ndarray, *, sigma: float = 10.0, scale: float = 1000.0, chunk: int = 2048
) -> float:
    """CMMD: scale x the biased (V-statistic) MMD^2 of an RBF kernel between two sets of unit embeddings.

    The estimator of the authors' code (google-research/cmmd, distance.py): with k(a, b) =
    exp(-|a - b|^2 / (2 sigma^2)), mean k over all x pairs + mean over all y pairs - 2 x mean over x-y
    pairs, the diagonal included. Rows must already be L2-normalised (a ValueError otherwise: the paper's
    sigma = 10 assumes unit vectors, and silently normalising would hide a wrong embedding column).

    Computed exactly, but arranged for precision and memory: the kernel is split as
    w_a w_b (1 + t + t^2/2 + r(t)), t = a.b / sigma^2; the first three terms become differences of float64
    weighted means (|mean_x - mean_y|^2, no cancellation of near-equal kernel means), and only the small
    remainder r is summed over all pairs, in `chunk` x `chunk` blocks of float32 matrix products.
    """
    x = _unit_rows(_features(x, "x"), "x")
    y = _unit_rows(_features(y, "y"), "y")
    _same_width(x, y, "x and y")
    _check_chunk(chunk)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    gamma = 1.0 / (2.0 * sigma**2)
    c = 2.0 * gamma
    wx, mean_wx, first_x, second_x = _kernel_moments(x, gamma, chunk)
    wy, mean_wy, first_y, second_y = _kernel_moments(y, gamma, chunk)
    smooth = (
        (mean_wx - mean_wy) ** 2
        + c * float(np.sum((first_x - first_y) ** 2))
        + c * c / 2.0 * float(np.sum((second_x - second_y) ** 2))
    )
    t_max = c * (1.0 + UNIT_NORM_TOLERANCE) ** 2
    coefficients = _remainder_coefficients(c, t_max)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    y32 = np.ascontiguousarray(y, dtype=np.float32)
    n, m = len(x), len(y)
    rest_xx = _remainder_sum(x32, wx, x32, wx, coefficients, chunk, symmetric=True)
    rest_yy = _remainder_sum(y32, wy, y32, wy, coefficients, chunk, symmetric=True)
    rest_xy = _remainder_sum(x32, wx, y32, wy, coefficients, chunk, symmetric=False)
    rest = rest_xx / n**2 + rest_yy / m**2 - 2.0 * rest_xy / (n * m)
    return scale * (smooth + rest)


# --------------------------------------------------------------------------------------------------- PRDC


class _Euclidean:
    """Blocks of Euclidean distances with exactly the arithmetic of sklearn's pairwise_distances.

    That is what `prdc.compute_prdc` uses, so radii and comparisons agree bit for bit: float32 inputs are
    upcast per block to float64, d^2 = (-2 a.b + |a|^2) + |b|^2 (this order), rounded to float32, clipped at
    0, square-rooted; any other input is float64 throughout. Self-distances are set to 0 as sklearn does.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.single = a.dtype == np.float32 and b.dtype == np.float32
        self.a = a if self.single else a.astype(np.float64)
        self.b = b if self.single else b.astype(np.float64)
        self.aa = self._squared_norms(self.a)
        self.bb = self.aa if b is a else self._squared_norms(self.b)

    @staticmethod
    def _squared_norms(a: np.ndarray) -> np.ndarray:
        # Row by row identical to sklearn's row_norms on an upcast block: einsum of one float64 row.
        out = np.empty(len(a))
        for s in _slices(len(a), 4096):
            block = a[s].astype(np.float64)
            out[s] = np.einsum("ij,ij->i", block, block)
        return out

    def block(self, si: slice, sj: slice) -> np.ndarray:
        d = -2 * (self.a[si].astype(np.float64) @ self.b[sj].astype(np.float64).T)
        d += self.aa[si, None]
        d += self.bb[None, sj]
        if self.single:
            d = d.astype(np.float32)
        np.maximum(d, 0, out=d)
        return np.sqrt(d, out=d)


def _radii(a: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row (the (k+1)-th smallest, self at 0 included)."""
    n = len(a)
    if k >= n:
        raise ValueError(f"k ({k}) must be smaller than the number of points ({n})")
    dist = _Euclidean(a, a)
    radii = None
    for si in _slices(n, chunk):
        candidates = []
        for sj in _slices(n, chunk):
            d = dist.block(si, sj)
            if si == sj:
                np.fill_diagonal(d, 0)
            # Keep each block's k+1 smallest per row: the row's (k+1)-th smallest is among them.
            candidates.append(d if d.shape[1] <= k + 1 else np.partition(d, k, axis=1)[:, : k + 1])
        kth = np.partition(np.concatenate(candidates, axis=1), k, axis=1)[:, k]
        if radii is None:
            radii = np.empty(n, dtype=kth.dtype)
        radii[si] = kth
    return radii


def prdc(real: np.ndarray, fake: np.ndarray, *, k: int = 5, chunk: int = 2048) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` against `real` (Naeem et al. 2020), k-NN balls.

    The definitions and the distances of the `prdc` package (compute_prdc), computed in blocks:
    precision = share of fake points inside some real point's k-NN ball; recall = share of real points
    inside some fake point's ball; density = mean over fake points of the number of real balls holding it,
    divided by k; coverage = share of real points whose ball holds a fake point. Balls are open (strict <).
    """
    real = _features(real, "real")
    fake = _features(fake, "fake")
    _same_width(real, fake, "real and fake")
    _check_chunk(chunk)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    real_radii = _radii(real, k, chunk)
    fake_radii = _radii(fake, k, chunk)
    dist = _Euclidean(real, fake)
    inside_real = np.zeros(len(fake), dtype=np.int64)  # per fake point: real balls holding it
    covered = np.zeros(len(real), dtype=bool)  # per real point: its ball holds a fake point
    recalled = np.zeros(len(real), dtype=bool)  # per real point: inside some fake ball
    for si in _slices(len(real), chunk):
        for sj in _slices(len(fake), chunk):
            d = dist.block(si, sj)
            in_real = d < real_radii[si, None]
            inside_real[sj] += in_real.sum(axis=0)
            covered[si] |= in_real.any(axis=1)
            recalled[si] |= (d < fake_radii[None, sj]).any(axis=1)
    return {
        "precision": float((inside_real > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float((1.0 / float(k)) * inside_real.mean()),
        "coverage": float(covered.mean()),
    }


# ---------------------------------------------------------------------------------------------------- map


def embedding_map(
    reference: np.ndarray, selected: np.ndarray, rest: np.ndarray | None = None, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """2-D coordinates for the report's map: one PCA fitted on all points together, so the sets share axes.

    Returns (reference, selected, rest) coordinates, float64 arrays of shape (len, 2) (rest None when not
    given). scikit-learn's PCA fixes component signs, and `seed` fixes its randomized solver where it picks
    one, so the same inputs always give the same map.
    """
    from sklearn.decomposition import PCA

    parts = [_features(reference, "reference"), _features(selected, "selected")]
    if rest is not None:
        parts.append(_features(rest, "rest"))
    for name, part in zip(("selected", "rest")[: len(parts) - 1], parts[1:], strict=True):
        _same_width(parts[0], part, f"reference and {name}")
    points = np.concatenate([p.astype(np.float64) for p in parts])
    if len(points) < 2:
        raise ValueError("the map needs at least 2 points in all")
    coords = PCA(n_components=2, random_state=seed).fit_transform(points)
    bounds = np.cumsum([0] + [len(p) for p in parts])
    out = [coords[bounds[i] : bounds[i + 1]] for i in range(len(parts))]
    return out[0], out[1], out[2] if rest is not None else None
