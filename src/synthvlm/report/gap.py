"""Distribution-gap metrics between a selected synthetic set and a real reference set, on CLIP embeddings.

CMMD (Jayasumana et al. 2024), PRDC (Naeem et al. 2020) and a PCA map (scikit-learn). Every pairwise
computation runs in tiles of `chunk` x `chunk`, so no n x m matrix is ever held. Two implementations of
the same arithmetic: numpy on the CPU (tiles spread over the cores, one BLAS thread per tile), and torch
on a CUDA device (or on any torch device named by `device`).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

# CMMD's inputs are CLIP embeddings scaled to unit length (as in the authors' code); |norm - 1| above this
# means the caller passed raw embeddings, for which sigma = 10 is not the paper's bandwidth.
UNIT_NORM_TOLERANCE = 1e-3
# Taylor terms of the kernel remainder are kept until the neglected part per pair is below this: far under
# the float32 rounding of the remainder itself (~1e-14), and under float64 resolution of the kernel (~1).
_REMAINDER_TOLERANCE = 1e-16
# Tile sides: on the CPU a 1024 x 1024 tile and its float64 copies stay in the shared cache while one
# core works on it; a GPU wants fewer, larger launches.
_CPU_CHUNK = 1024
_TORCH_CHUNK = 8192
# PRDC's radii start from the (k+1)-th nearest among this many columns: an upper bound that lets every
# later tile hand over only the few entries below it.
_SEED_COLUMNS = 512

_T = TypeVar("_T")
_R = TypeVar("_R")


def _features(a: Any, name: str) -> np.ndarray:
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


def _check_chunk(chunk: int | None) -> None:
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk}")


# ------------------------------------------------------------------------------------------------ devices


def resolve_device(device: str) -> str:
    """The implementation `device` names: "numpy" (the CPU path), or a torch device string.

    "auto" is "cuda" when torch is installed and sees a CUDA device, else "numpy"; any other string is a
    torch device ("cuda", "cuda:1", "cpu": torch's own CPU kernels, used to check the two paths agree).
    """
    if device == "auto":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return "numpy"
        import torch

        return "cuda" if torch.cuda.is_available() else "numpy"
    return device


def _workers() -> int:
    """Threads for the CPU tiles: every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_tiles(fn: Callable[[_T], _R], tiles: Iterable[_T]) -> Iterator[_R]:
    """fn over the tiles on one thread per core, each BLAS call single-threaded, results in tile order.

    numpy's element-wise passes run on one core, and OpenBLAS's own threads spin while they wait (CPU
    time lost on a shared machine); giving each core whole tiles (matrix product and the passes after
    it) keeps every core busy with useful work. Results come back in order, so every sum is taken in the
    same order whatever the timing: the same inputs give the same bits. Used by every CPU metric of the
    report (gap, diversity).
    """
    workers = _workers()
    if workers == 1:
        yield from map(fn, tiles)
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        # A bounded window of tiles in flight: finished results wait at most a few tiles to be taken,
        # and a tile of the radii reads bounds at most a few merges old.
        pending: list[Any] = []
        for tile in tiles:
            pending.append(pool.submit(fn, tile))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


class _Buffers(threading.local):
    """Per-thread scratch arrays reused across tiles: a fresh multi-MB array per tile costs page faults."""

    def get(self, name: str, shape: tuple[int, int], dtype: Any) -> np.ndarray:
        size = shape[0] * shape[1]
        buffer = getattr(self, name, None)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = np.empty(size, dtype=dtype)
            setattr(self, name, buffer)
        return buffer[:size].reshape(shape)


# --------------------------------------------------------------------------------------------------- CMMD


def _kernel_moments(
    a: np.ndarray, gamma: float, chunk: int
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Per-point weights w_i = exp(-gamma |a_i|^2) and the weighted means of 1, a_i and a_i a_i^T (float64).

    exp(-gamma |a - b|^2) = w_a w_b exp(2 gamma a.b), so the kernel means of the first three Taylor terms of
    exp(2 gamma a.b) are inner products of these means: O(n d^2) instead of O(n^2 d).
    """
    n, d = a.shape

    def block_moments(rows: slice) -> tuple[slice, np.ndarray, np.ndarray, np.ndarray]:
        block = a[rows].astype(np.float64)
        w = np.exp(-gamma * np.einsum("ij,ij->i", block, block))
        # B^T B of one buffer: numpy hands it to BLAS syrk, half the work of a general product.
        scaled = block * np.sqrt(w)[:, None]
        return rows, w, w @ block, scaled.T @ scaled

    w = np.empty(n)
    first = np.zeros(d)
    second = np.zeros((d, d))
    for rows, w_rows, first_rows, second_rows in map_tiles(block_moments, _slices(n, max(chunk, 4096))):
        w[rows] = w_rows
        first += first_rows
        second += second_rows
    return w, math.fsum(w) / n, first / n, second / n


def _remainder_coefficients(c: float, t_max: float) -> list[float]:
    """c^p / p! for p = 3..P, P the first order whose neglected tail is below _REMAINDER_TOLERANCE."""
    coefficients = []
    p = 3
    while True:
        coefficients.append(c**p / math.factorial(p))
        tail = 4.0 * math.exp(t_max) * t_max ** (p + 1) / math.factorial(p + 1)
        if tail <= _REMAINDER_TOLERANCE:
            return coefficients
        p += 1


def _pair_tiles(n: int, m: int, chunk: int, symmetric: bool) -> list[tuple[slice, slice, float]]:
    """(rows, columns, multiplicity) of every tile; with symmetric (n x n of one set) only the tiles on
    and above the diagonal, those above counted twice."""
    rows, cols = _slices(n, chunk), _slices(m, chunk)
    return [
        (si, sj, 1.0 if not symmetric or i == j else 2.0)
        for i, si in enumerate(rows)
        for j, sj in enumerate(cols)
        if not symmetric or j >= i
    ]


def _remainder_sum(
    a: np.ndarray,
    wa: np.ndarray,
    b: np.ndarray,
    wb: np.ndarray,
    coefficients: list[float],
    chunk: int,
    symmetric: bool,
) -> float:
    """sum_ij wa_i wb_j r(a_i.b_j), r(g) = sum_{p>=3} c^p g^p / p!, in chunk x chunk float32 tiles.

    r is below ~2e-7 per pair at the paper's sigma, so float32 inner products (error ~1e-7 in g) change it by
    ~1e-14: the tiled sums stay far more precise than an all-float32 evaluation of the whole kernel.
    With symmetric (a is b), only tiles on or above the diagonal are computed, the others counted twice.
    """
    wb32 = wb.astype(np.float32)
    c32 = [np.float32(c) for c in coefficients]
    buffers = _Buffers()

    def tile(spec: tuple[slice, slice, float]) -> float:
        si, sj, times = spec
        shape = (si.stop - si.start, sj.stop - sj.start)
        g = buffers.get("g", shape, np.float32)
        q = buffers.get("q", shape, np.float32)
        np.matmul(a[si], b[sj].T, out=g)
        # Horner in g for sum_p coefficient_p g^(p-3), then times g^3.
        np.multiply(g, c32[-1], out=q)
        for coefficient in c32[-2::-1]:
            q += coefficient
            q *= g
        q *= g
        q *= g
        return times * float(wa[si] @ (q @ wb32[sj]).astype(np.float64))

    total = 0.0
    for part in map_tiles(tile, _pair_tiles(len(a), len(b), chunk, symmetric)):
        total += part
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
    x: np.ndarray,
    y: np.ndarray,
    *,
    sigma: float = 10.0,
    scale: float = 1000.0,
    chunk: int | None = None,
    device: str = "auto",
) -> float:
    """CMMD: scale x the biased (V-statistic) MMD^2 of an RBF kernel between two sets of unit embeddings.

    The estimator of the authors' code (google-research/cmmd, distance.py): with k(a, b) =
    exp(-|a - b|^2 / (2 sigma^2)), mean k over all x pairs + mean over all y pairs - 2 x mean over x-y
    pairs, the diagonal included. Rows must already be L2-normalised (a ValueError otherwise: the paper's
    sigma = 10 assumes unit vectors, and silently normalising would hide a wrong embedding column).

    Computed exactly, but arranged for precision and memory: the kernel is split as
    w_a w_b (1 + t + t^2/2 + r(t)), t = a.b / sigma^2; the first three terms become differences of float64
    weighted means (|mean_x - mean_y|^2, no cancellation of near-equal kernel means), and only the small
    remainder r is summed over all pairs, in `chunk` x `chunk` tiles of float32 matrix products.
    `device` picks the implementation (`resolve_device`): the numpy one, or the same arithmetic in torch.
    """
    x = _unit_rows(_features(x, "x"), "x")
    y = _unit_rows(_features(y, "y"), "y")
    _same_width(x, y, "x and y")
    _check_chunk(chunk)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    gamma = 1.0 / (2.0 * sigma**2)
    c = 2.0 * gamma
    coefficients = _remainder_coefficients(c, c * (1.0 + UNIT_NORM_TOLERANCE) ** 2)
    device = resolve_device(device)
    if device != "numpy":
        return scale * _cmmd_torch(x, y, gamma, coefficients, chunk or _TORCH_CHUNK, device)
    chunk = chunk or _CPU_CHUNK
    wx, mean_wx, first_x, second_x = _kernel_moments(x, gamma, chunk)
    wy, mean_wy, first_y, second_y = _kernel_moments(y, gamma, chunk)
    smooth = (
        (mean_wx - mean_wy) ** 2
        + c * float(np.sum((first_x - first_y) ** 2))
        + c * c / 2.0 * float(np.sum((second_x - second_y) ** 2))
    )
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    y32 = np.ascontiguousarray(y, dtype=np.float32)
    n, m = len(x), len(y)
    rest_xx = _remainder_sum(x32, wx, x32, wx, coefficients, chunk, symmetric=True)
    rest_yy = _remainder_sum(y32, wy, y32, wy, coefficients, chunk, symmetric=True)
    rest_xy = _remainder_sum(x32, wx, y32, wy, coefficients, chunk, symmetric=False)
    rest = rest_xx / n**2 + rest_yy / m**2 - 2.0 * rest_xy / (n * m)
    return scale * (smooth + rest)


@contextlib.contextmanager
def _ieee_float32() -> Iterator[None]:
    """float32 matrix products in full float32 while inside: TF32 or bfloat16 passes (which other code in
    the process may have switched on) would cost the remainder its precision."""
    import torch

    precision, tf32 = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = tf32


def _cmmd_torch(
    x: np.ndarray, y: np.ndarray, gamma: float, coefficients: list[float], chunk: int, device: str
) -> float:
    """Unscaled CMMD with the numpy path's arithmetic in torch: float64 moments, float32 remainder tiles."""
    import torch

    c = 2.0 * gamma

    def moments(a: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor, torch.Tensor]:
        w = torch.exp(-gamma * (a * a).sum(dim=1))
        n = a.shape[0]
        return w, float(w.sum()) / n, (w @ a) / n, ((a * w[:, None]).T @ a) / n

    def remainder(a: torch.Tensor, wa: torch.Tensor, b: torch.Tensor, wb: torch.Tensor, sym: bool) -> float:
        wb32 = wb.float()
        total = 0.0
        for si, sj, times in _pair_tiles(a.shape[0], b.shape[0], chunk, sym):
            g = a[si] @ b[sj].T
            q = g * coefficients[-1]
            for coefficient in coefficients[-2::-1]:
                q += coefficient
                q *= g
            q *= g
            q *= g
            total += times * float(wa[si] @ (q @ wb32[sj]).double())
        return total

    with torch.no_grad(), _ieee_float32():
        x64 = torch.as_tensor(x, device=device).double()
        y64 = torch.as_tensor(y, device=device).double()
        wx, mean_wx, first_x, second_x = moments(x64)
        wy, mean_wy, first_y, second_y = moments(y64)
        smooth = (
            (mean_wx - mean_wy) ** 2
            + c * float(((first_x - first_y) ** 2).sum())
            + c * c / 2.0 * float(((second_x - second_y) ** 2).sum())
        )
        x32, y32 = x64.float(), y64.float()
        n, m = len(x), len(y)
        rest = (
            remainder(x32, wx, x32, wx, True) / n**2
            + remainder(y32, wy, y32, wy, True) / m**2
            - 2.0 * remainder(x32, wx, y32, wy, False) / (n * m)
        )
    return smooth + rest


# --------------------------------------------------------------------------------------------------- PRDC


class _Euclidean:
    """Euclidean distances with exactly the arithmetic of sklearn's pairwise_distances, in two steps.

    That is what `prdc.compute_prdc` uses, so radii and comparisons agree bit for bit: float32 inputs are
    upcast to float64, the squared distance is taken as v = (-2 a.b + |a|^2) + |b|^2 (this order), and
    the distance is finish(v) = sqrt(max(float32(v), 0)) (no float32 rounding for other inputs);
    self-distances are 0 as sklearn sets them. `finish` is non-decreasing, so k-th smallest distances
    are finish(k-th smallest v), and d < R is v < threshold(R): the tiles never round or take roots.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.single = a.dtype == np.float32 and b.dtype == np.float32
        self.a = a.astype(np.float64, copy=False)
        self.b = self.a if b is a else b.astype(np.float64, copy=False)
        self.aa = self._squared_norms(self.a)
        self.bb = self.aa if b is a else self._squared_norms(self.b)

    def against(self, other: _Euclidean) -> _Euclidean:
        """Distances from this set's rows to `other`'s rows, on the float64 copies and norms both hold
        (sklearn computes the same norms for a set whatever it is compared with)."""
        pair = object.__new__(_Euclidean)
        pair.single = self.single and other.single
        pair.a, pair.aa, pair.b, pair.bb = self.a, self.aa, other.a, other.aa
        return pair

    @staticmethod
    def _squared_norms(a: np.ndarray) -> np.ndarray:
        # Row by row identical to sklearn's row_norms on an upcast block: einsum of one float64 row.
        out = np.empty(len(a))
        for s in _slices(len(a), 4096):
            out[s] = np.einsum("ij,ij->i", a[s], a[s])
        return out

    def products(self, si: slice, sj: slice, out: np.ndarray) -> np.ndarray:
        """-2 a.b of a tile (float64; scaled after the product, as sklearn does)."""
        a, b = self.a[si], self.b[sj]
        if np.may_share_memory(a, b):
            # numpy multiplies a block by its own transpose with syrk, not gemm; sklearn's blocks are
            # separate copies (gemm), whose sums may round differently.
            b = b.copy()
        np.matmul(a, b.T, out=out)
        return np.multiply(out, -2.0, out=out)

    def finish(self, v: np.ndarray) -> np.ndarray:
        """Distances from squared-distance values v, rounded as sklearn rounds them."""
        d = v.astype(np.float32) if self.single else v.astype(np.float64)
        np.maximum(d, 0, out=d)
        return np.sqrt(d, out=d)

    def thresholds(self, radii: np.ndarray) -> np.ndarray:
        """Per radius R, the smallest float64 v with finish(v) >= R (-inf for R = 0): finish(v) < R exactly
        when v < it. Bisection over the bit patterns of positive float64 values (ordered like integers)."""
        radii = radii.astype(np.float64)
        positive = radii > 0
        lo = np.zeros(len(radii), dtype=np.int64)  # +0.0: finish(0) = 0 < R
        hi = np.where(positive, radii * radii * 2.0 + 1.0, 0.0).view(np.int64)  # finish(hi) >= R
        while True:
            open_ = positive & (hi - lo > 1)
            if not open_.any():
                break
            mid = lo + (hi - lo) // 2
            ok = self.finish(mid.view(np.float64)) >= radii
            hi = np.where(open_ & ok, mid, hi)
            lo = np.where(open_ & ~ok, mid, lo)
        return np.where(positive, hi.view(np.float64), -np.inf)


def _merge(best: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """best[r] := the k+1 smallest of best[r] and the values given for row r (rows may repeat); returns
    the rows changed."""
    if len(rows) == 0:
        return rows
    kept = best.shape[1]
    touched, inverse = np.unique(rows, return_inverse=True)
    ids = np.concatenate([np.repeat(np.arange(len(touched)), kept), inverse])
    pool = np.concatenate([best[touched].ravel(), values])
    order = np.lexsort((pool, ids))
    starts = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=len(touched)))[:-1]])
    best[touched] = pool[order][starts[:, None] + np.arange(kept)]
    return touched


def _radii(dist: _Euclidean, k: int, chunk: int) -> np.ndarray:
    """Squared-distance value v of each row's k-th nearest other row (the (k+1)-th smallest, self at 0).

    Each row starts from the (k+1)-th smallest v over the first _SEED_COLUMNS columns repeated k+1 times
    (an upper bound of the answer, and the answer itself when no entry lies below it); every tile then
    hands over only its entries below the row's current bound, so tiles need no partial sort. The n x n
    matrix is symmetric up to the order of the two norm additions: each product tile above the diagonal
    serves its rows and, transposed, its columns.
    """
    n = len(dist.a)
    if k >= n:
        raise ValueError(f"k ({k}) must be smaller than the number of points ({n})")
    seed = slice(0, min(n, max(_SEED_COLUMNS, k + 1)))
    bound = np.empty(n)
    for si in _slices(n, chunk):
        v = dist.products(si, seed, np.empty((si.stop - si.start, seed.stop)))
        v += dist.aa[si, None]
        v += dist.bb[None, seed]
        inside = np.arange(si.start, min(si.stop, seed.stop))
        v[inside - si.start, inside] = 0.0
        bound[si] = np.partition(v, k, axis=1)[:, k]
    best = np.repeat(bound[:, None], k + 1, axis=1)
    buffers = _Buffers()

    def tile(spec: tuple[slice, slice, float]) -> tuple[np.ndarray, np.ndarray]:
        si, sj, _ = spec
        shape = (si.stop - si.start, sj.stop - sj.start)
        t = dist.products(si, sj, buffers.get("t", shape, np.float64))
        v = np.add(t, dist.aa[si, None], out=buffers.get("v", shape, np.float64))
        v += dist.aa[None, sj]
        if si == sj:
            np.fill_diagonal(v, 0.0)
        # Flat positions: np.nonzero of a 2-D mask is ten times slower than of its flat view.
        below = np.flatnonzero(v < bound[si, None])
        rows, values = [below // shape[1] + si.start], [v.ravel()[below]]
        if si != sj:
            # v[j, i] = (-2 a_j.a_i + |a_j|^2) + |a_i|^2: the same product, the norms added in that order.
            t += dist.aa[None, sj]
            t += dist.aa[si, None]
            below = np.flatnonzero(t < bound[None, sj])
            rows.append(below % shape[1] + sj.start)
            values.append(t.ravel()[below])
        return np.concatenate(rows), np.concatenate(values)

    # Tiles run ahead of the merges with the bounds they saw: a stale bound is higher, never wrong.
    for rows, values in map_tiles(tile, _pair_tiles(n, n, chunk, symmetric=True)):
        touched = _merge(best, rows, values)
        bound[touched] = best[touched, k]
    return best[:, k]


def prdc(
    real: np.ndarray, fake: np.ndarray, *, k: int = 5, chunk: int | None = None, device: str = "auto"
) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` against `real` (Naeem et al. 2020), k-NN balls.

    The definitions and the distances of the `prdc` package (compute_prdc), computed in tiles:
    precision = share of fake points inside some real point's k-NN ball; recall = share of real points
    inside some fake point's ball; density = mean over fake points of the number of real balls holding it,
    divided by k; coverage = share of real points whose ball holds a fake point. Balls are open (strict <).
    `device` picks the implementation (`resolve_device`): the numpy one, or the same arithmetic in torch.
    """
    real = _features(real, "real")
    fake = _features(fake, "fake")
    _same_width(real, fake, "real and fake")
    _check_chunk(chunk)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    for name, points in (("real", real), ("fake", fake)):
        if k >= len(points):
            raise ValueError(f"k ({k}) must be smaller than the number of points ({len(points)}) in {name}")
    device = resolve_device(device)
    if device != "numpy":
        return _prdc_torch(real, fake, k, chunk or _TORCH_CHUNK, device)
    chunk = chunk or _CPU_CHUNK
    # Radii of one set use that set's own rounding rule (sklearn is called on it alone).
    real_self = _Euclidean(real, real)
    fake_self = _Euclidean(fake, fake)
    real_radii = real_self.finish(_radii(real_self, k, chunk))
    fake_radii = fake_self.finish(_radii(fake_self, k, chunk))
    dist = real_self.against(fake_self)
    real_bound, fake_bound = dist.thresholds(real_radii), dist.thresholds(fake_radii)
    buffers = _Buffers()

    def tile(spec: tuple[slice, slice, float]) -> tuple[slice, slice, np.ndarray, np.ndarray, np.ndarray]:
        si, sj, _ = spec
        v = dist.products(si, sj, buffers.get("v", (si.stop - si.start, sj.stop - sj.start), np.float64))
        v += dist.aa[si, None]
        v += dist.bb[None, sj]
        in_real = v < real_bound[si, None]
        recalled = (v < fake_bound[None, sj]).any(axis=1)
        return si, sj, in_real.sum(axis=0), in_real.any(axis=1), recalled

    inside_real = np.zeros(len(fake), dtype=np.int64)  # per fake point: real balls holding it
    covered = np.zeros(len(real), dtype=bool)  # per real point: its ball holds a fake point
    recalled = np.zeros(len(real), dtype=bool)  # per real point: inside some fake ball
    tiles = _pair_tiles(len(real), len(fake), chunk, symmetric=False)
    for si, sj, counts, any_real, any_fake in map_tiles(tile, tiles):
        inside_real[sj] += counts
        covered[si] |= any_real
        recalled[si] |= any_fake
    return _prdc_values(inside_real, covered, recalled, k)


def _prdc_values(inside_real: np.ndarray, covered: np.ndarray, recalled: np.ndarray, k: int) -> dict:
    # The package's own reductions: a mean of bools, and of int64 counts, in float64.
    return {
        "precision": float((inside_real > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float((1.0 / float(k)) * inside_real.mean()),
        "coverage": float(covered.mean()),
    }


def _prdc_torch(real: np.ndarray, fake: np.ndarray, k: int, chunk: int, device: str) -> dict[str, float]:
    """PRDC with sklearn's distance arithmetic in torch: float64 products, the float32 rounding of float32
    inputs, the k-th smallest per row merged over column tiles."""
    import torch

    single = real.dtype == np.float32 and fake.dtype == np.float32

    def distances(a: torch.Tensor, aa: torch.Tensor, b: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
        d = -2 * (a @ b.T)
        d += aa[:, None]
        d += bb[None, :]
        if single:
            d = d.float()
        return d.clamp_(min=0).sqrt_()

    def radii(a: torch.Tensor, aa: torch.Tensor) -> torch.Tensor:
        n = a.shape[0]
        out = []
        for si in _slices(n, chunk):
            smallest = []
            for sj in _slices(n, chunk):
                d = distances(a[si], aa[si], a[sj], aa[sj])
                if si == sj:
                    d.fill_diagonal_(0)
                smallest.append(d.topk(min(k + 1, d.shape[1]), dim=1, largest=False).values)
            out.append(torch.cat(smallest, dim=1).kthvalue(k + 1, dim=1).values)
        return torch.cat(out)

    with torch.no_grad():
        r = torch.as_tensor(real, device=device).double()
        f = torch.as_tensor(fake, device=device).double()
        rr, ff = (r * r).sum(dim=1), (f * f).sum(dim=1)
        real_radii, fake_radii = radii(r, rr), radii(f, ff)
        inside_real = torch.zeros(len(fake), dtype=torch.int64, device=device)
        covered = torch.zeros(len(real), dtype=torch.bool, device=device)
        recalled = torch.zeros(len(real), dtype=torch.bool, device=device)
        for si in _slices(len(real), chunk):
            for sj in _slices(len(fake), chunk):
                d = distances(r[si], rr[si], f[sj], ff[sj])
                in_real = d < real_radii[si, None]
                inside_real[sj] += in_real.sum(dim=0)
                covered[si] |= in_real.any(dim=1)
                recalled[si] |= (d < fake_radii[None, sj]).any(dim=1)
    return _prdc_values(inside_real.cpu().numpy(), covered.cpu().numpy(), recalled.cpu().numpy(), k)


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
