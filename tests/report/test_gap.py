"""Gap metrics: CMMD against the direct formula, PRDC against the prdc package, the torch path against the
numpy path, the PCA map. The exact checks name device="numpy": on a CUDA machine "auto" is the GPU."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import prdc as prdc_package
import pytest

from synthvlm.report import gap
from synthvlm.report.gap import embedding_map


def cmmd(x: np.ndarray, y: np.ndarray, **kwargs) -> float:
    return gap.cmmd(x, y, device="numpy", **kwargs)


def prdc(real: np.ndarray, fake: np.ndarray, **kwargs) -> dict[str, float]:
    return gap.prdc(real, fake, device="numpy", **kwargs)


def _unit(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    a = (rng.standard_normal((n, d)) + shift).astype(np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _direct_cmmd(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, dtype: type = np.longdouble) -> float:
    """The paper's formula with every pair's |a - b|^2 taken from the differences (no Gram trick)."""
    x, y = x.astype(dtype), y.astype(dtype)
    gamma = 1 / (2 * dtype(sigma) ** 2)

    def mean_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        rows = [np.exp(-gamma * ((row[None, :] - b) ** 2).sum(axis=-1)).sum() for row in a]
        return np.sum(rows) / (len(a) * len(b))

    return float(1000 * (mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y)))


@pytest.fixture(scope="module")
def sets() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20240101)
    return [
        (_unit(rng, 60, 32), _unit(rng, 80, 32, shift=0.3)),
        (_unit(rng, 150, 64), _unit(rng, 120, 64, shift=0.1)),
        (_unit(rng, 120, 128, shift=0.05), _unit(rng, 100, 128)),
    ]


def test_cmmd_equals_direct_formula(sets: list[tuple[np.ndarray, np.ndarray]]) -> None:
    # Measured: <= 2e-13 relative against an extended-precision direct evaluation (float64 direct: <= 6e-13).
    for x, y in sets:
        exact = _direct_cmmd(x, y)
        assert cmmd(x, y) == pytest.approx(exact, rel=1e-9, abs=0)
        assert cmmd(x, y, chunk=17) == pytest.approx(_direct_cmmd(x, y, dtype=np.float64), rel=1e-9, abs=0)


def test_cmmd_other_sigma_and_scale(sets: list[tuple[np.ndarray, np.ndarray]]) -> None:
    x, y = sets[0]
    assert cmmd(x, y, sigma=3.0, scale=1.0) == pytest.approx(_direct_cmmd(x, y, sigma=3.0) / 1000, rel=1e-9)


def test_cmmd_identical_sets_give_zero(sets: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for x, _ in sets:
        assert cmmd(x, x) == 0.0
        assert abs(cmmd(x, x.copy(), chunk=13)) <= 1e-12


def test_cmmd_independent_of_chunk(sets: list[tuple[np.ndarray, np.ndarray]]) -> None:
    x, y = sets[0]
    values = [cmmd(x, y, chunk=c) for c in (1, 7, 64, 4096)]
    assert max(values) - min(values) <= 1e-12 * abs(values[0])


def test_cmmd_by_hand() -> None:
    # One point each, at angle theta: MMD^2 = k(x,x) + k(y,y) - 2 k(x,y) = 2 - 2 exp(-|x-y|^2 / 200),
    # |x - y|^2 = 2 - 2 cos(theta) = 1 for theta = 60 degrees.
    x = np.array([[1.0, 0.0]])
    y = np.array([[0.5, math.sqrt(3) / 2]])
    assert cmmd(x, y) == pytest.approx(1000 * (2 - 2 * math.exp(-1 / 200)), rel=1e-12)
    # Two points against one: the diagonal counts, (1 + 1 + 2 e) / 4 + 1 - 2 (1 + e) / 2 = (1 - e) / 2.
    x2 = np.array([[1.0, 0.0], [0.0, 1.0]])
    y2 = np.array([[1.0, 0.0]])
    e = math.exp(-2 / 200)
    assert cmmd(x2, y2, scale=1.0) == pytest.approx((1 - e) / 2, rel=1e-12)


def test_cmmd_rejects_raw_embeddings() -> None:
    x = np.full((3, 4), 0.5)
    with pytest.raises(ValueError, match="unit-length rows"):
        cmmd(x * 3, x)
    with pytest.raises(ValueError, match="same dimension"):
        cmmd(x, np.eye(3))


def _package(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        return {key: float(value) for key, value in prdc_package.compute_prdc(real, fake, k).items()}


@pytest.mark.parametrize(
    ("n_real", "n_fake", "dim", "k", "dtype", "seed"),
    [
        (300, 250, 16, 5, np.float32, 0),
        (400, 500, 64, 3, np.float32, 1),
        (600, 550, 32, 5, np.float64, 2),
        (200, 210, 8, 1, np.float32, 3),
        (350, 300, 128, 10, np.float32, 4),
    ],
)
def test_prdc_equals_package(n_real: int, n_fake: int, dim: int, k: int, dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim)).astype(dtype)
    fake = (rng.standard_normal((n_fake, dim)) * 1.1 + 0.1).astype(dtype)
    expected = _package(real, fake, k)
    assert prdc(real, fake, k=k) == expected  # exact: the same float distances, the same comparisons
    assert prdc(real, fake, k=k, chunk=37) == expected


def test_prdc_independent_of_chunk() -> None:
    rng = np.random.default_rng(7)
    real = rng.standard_normal((97, 24)).astype(np.float32)
    fake = rng.standard_normal((70, 24)).astype(np.float32) + 0.2
    results = [prdc(real, fake, k=4, chunk=c) for c in (1, 5, 64, 1000)]
    assert all(r == results[0] for r in results)


def test_prdc_identical_sets() -> None:
    rng = np.random.default_rng(8)
    real = rng.standard_normal((100, 8)).astype(np.float32)
    # Every point is at distance 0 < its radius from its copy: all four are 1 (density: k balls hold each).
    assert prdc(real, real.copy(), k=3) == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}


def test_prdc_rejects_k_too_large() -> None:
    with pytest.raises(ValueError, match="smaller than the number of points"):
        prdc(np.zeros((5, 2)), np.ones((9, 2)), k=5)


def test_cmmd_512d_tiles_equal_direct_formula() -> None:
    # CLIP-like: 512-d, concentrated (cosines ~0.5, where the remainder term is largest), several tiles
    # per side, tiles above the diagonal counted twice, both cores busy.
    rng = np.random.default_rng(11)
    x, y = _unit(rng, 300, 512, shift=1.0), _unit(rng, 260, 512, shift=0.9)
    exact = _direct_cmmd(x, y)
    assert cmmd(x, y, chunk=64) == pytest.approx(exact, rel=1e-9, abs=0)
    assert cmmd(x, y) == pytest.approx(exact, rel=1e-9, abs=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prdc_512d_tiles_equal_package(dtype: type) -> None:
    # More rows than the radii's seed columns (512), several tiles on each side of the diagonal.
    rng = np.random.default_rng(12)
    real = _unit(rng, 700, 512, shift=0.5).astype(dtype)
    fake = _unit(rng, 650, 512, shift=0.55).astype(dtype)
    expected = _package(real, fake, 5)
    assert prdc(real, fake, k=5, chunk=128) == expected
    assert prdc(real, fake, k=5) == expected


def test_prdc_ties_and_zero_radii_equal_package() -> None:
    # Every real point three times: exact ties among distances and radii; with k = 2 the radii are 0 (the
    # two copies), and no open ball of radius 0 holds anything. Some fakes are copies of real points.
    rng = np.random.default_rng(13)
    base = rng.standard_normal((70, 24)).astype(np.float32)
    real = np.repeat(base, 3, axis=0)
    fake = np.concatenate([base[:30], rng.standard_normal((90, 24)).astype(np.float32)])
    for k in (2, 3, 5):
        expected = _package(real, fake, k)
        assert prdc(real, fake, k=k, chunk=16) == expected
        assert prdc(real, fake, k=k) == expected
    zero_radii = prdc(real, fake, k=2)
    assert (zero_radii["precision"], zero_radii["density"], zero_radii["coverage"]) == (0.0, 0.0, 0.0)
    assert zero_radii["recall"] >= 90 / 210  # at least the copies of the 30 points that fake holds


def test_prdc_mixed_dtypes_equal_package() -> None:
    # float32 real, float64 fake: each set's radii keep its own rounding, the cross distances are float64.
    rng = np.random.default_rng(16)
    real = rng.standard_normal((150, 40)).astype(np.float32)
    fake = rng.standard_normal((170, 40)) * 1.1
    assert prdc(real, fake, k=4, chunk=32) == _package(real, fake, 4)
    assert prdc(fake, real, k=4, chunk=32) == _package(fake, real, 4)


def test_resolve_device() -> None:
    import torch

    assert gap.resolve_device("numpy") == "numpy"
    assert gap.resolve_device("cpu") == "cpu"
    assert gap.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "numpy")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_path_equals_numpy_path(dtype: type) -> None:
    """The torch implementation, run on torch's CPU kernels: CMMD within 1e-6, PRDC's counts identical."""
    rng = np.random.default_rng(14)
    x, y = _unit(rng, 230, 64, shift=0.4).astype(dtype), _unit(rng, 170, 64, shift=0.5).astype(dtype)
    reference = cmmd(x, y)
    for chunk in (None, 50):
        assert gap.cmmd(x, y, chunk=chunk, device="cpu") == pytest.approx(reference, rel=1e-6, abs=0)
        assert gap.prdc(x, y, k=4, chunk=chunk, device="cpu") == prdc(x, y, k=4)
    assert gap.cmmd(x, x, device="cpu") == pytest.approx(0.0, abs=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_path_equals_numpy_path(dtype: type) -> None:
    rng = np.random.default_rng(15)
    x, y = _unit(rng, 3000, 512, shift=0.6).astype(dtype), _unit(rng, 2500, 512, shift=0.5).astype(dtype)
    assert gap.cmmd(x, y, device="cuda") == pytest.approx(cmmd(x, y), rel=1e-6, abs=0)
    assert gap.cmmd(x, y, chunk=1000, device="cuda") == pytest.approx(cmmd(x, y), rel=1e-6, abs=0)
    assert gap.prdc(x, y, device="cuda") == prdc(x, y)


def test_embedding_map_shapes_and_determinism() -> None:
    rng = np.random.default_rng(9)
    ref, sel, rest = (
        rng.standard_normal((40, 16)),
        rng.standard_normal((25, 16)) + 1,
        rng.standard_normal((7, 16)),
    )
    a = embedding_map(ref, sel, rest)
    b = embedding_map(ref.copy(), sel.copy(), rest.copy())
    assert [p.shape for p in a] == [(40, 2), (25, 2), (7, 2)]
    for p, q in zip(a, b, strict=True):
        assert np.array_equal(p, q)
    ref_only, sel_only, none = embedding_map(ref, sel)
    assert none is None and ref_only.shape == (40, 2) and sel_only.shape == (25, 2)
    # One PCA over all points: centred together, the first axis separates the shifted set.
    coords = np.concatenate(a)
    assert np.allclose(coords.mean(axis=0), 0, atol=1e-12)
    assert abs(a[0][:, 0].mean() - a[1][:, 0].mean()) > 2.0
