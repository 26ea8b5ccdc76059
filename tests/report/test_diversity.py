"""The Vendi score: against its n x n definition, known values, and the authors' `vendi-score` package."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthvlm.report import diversity
from synthvlm.report.diversity import vendi_score


def _direct(x: np.ndarray) -> float:
    """The definition itself: eigenvalues of K / n, K = X X^T on unit rows, entropy with 0 log 0 = 0."""
    x = x.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(x @ x.T / len(x))
    p = eigenvalues[eigenvalues > 0]
    return math.exp(-float(np.sum(p * np.log(p))))


@pytest.mark.parametrize(
    ("n", "d", "dtype", "shift", "seed"),
    [
        (50, 16, np.float32, 0.0, 0),  # n > d
        (8, 64, np.float32, 0.0, 1),  # n < d: K / n has d - n fewer non-zero eigenvalues than the Gram
        (200, 32, np.float16, 0.3, 2),
        (120, 48, np.float64, 1.0, 3),  # shifted: a low score, eigenvalues spread over 1e-4 .. 0.9
    ],
)
def test_vendi_equals_the_n_by_n_formula(n: int, d: int, dtype: type, shift: float, seed: int) -> None:
    x = (np.random.default_rng(seed).standard_normal((n, d)) + shift).astype(dtype)
    assert vendi_score(x) == pytest.approx(_direct(x), rel=1e-9, abs=0)


def test_vendi_known_values() -> None:
    # n copies of one point: K / n is the all-(1/n) matrix, one eigenvalue 1, the score 1.
    axis = np.zeros((30, 8), dtype=np.float32)
    axis[:, 3] = 2.5
    assert vendi_score(axis) == 1.0  # exact: the Gram matrix is diagonal
    row = np.random.default_rng(4).standard_normal(24).astype(np.float32)
    assert vendi_score(np.tile(row, (100, 1))) == pytest.approx(1.0, rel=1e-12)
    assert vendi_score(np.tile(row, (100, 1)).astype(np.float16)) == pytest.approx(1.0, rel=1e-12)
    # n orthonormal points: K / n = I / n, n eigenvalues 1/n, the score n.
    assert vendi_score(np.eye(7, 10)) == pytest.approx(7.0, rel=1e-14)
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((40, 12)))
    assert vendi_score(q.T * 3.0) == pytest.approx(12.0, rel=1e-12)  # 12 orthogonal rows, length 3
    # Two orthogonal clusters of sizes 3 and 1: eigenvalues 3/4 and 1/4.
    two = np.array([[1.0, 0.0], [2.0, 0.0], [0.5, 0.0], [0.0, 7.0]])
    assert vendi_score(two) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


# Computed by the authors' package, vendi-score 0.0.3 (numpy 2.4.6, scipy 1.17.1, scikit-learn 1.9.1):
# vendi.score_X(x) (the n x n kernel) and vendi.score_dual(x) (the d x d Gram matrix), x in float64.
PACKAGE = [
    ("gaussian 40 x 16", 13.480514007706581, 13.48051400770649),
    ("shifted 25 x 64", 17.371512278624607, 17.371512278624753),
    ("3 clusters 30 x 32", 2.989212297572074, 2.9892122975720676),
]


def _package_inputs() -> list[np.ndarray]:
    a = np.random.default_rng(2023).standard_normal((40, 16))
    b = np.random.default_rng(7).standard_normal((25, 64)) + 0.5
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((3, 32))[np.arange(30) % 3]
    c = centres + 0.05 * rng.standard_normal((30, 32))
    return [a, b, c]


def test_vendi_equals_the_package() -> None:
    for x, (name, by_kernel, by_gram) in zip(_package_inputs(), PACKAGE, strict=True):
        assert vendi_score(x) == pytest.approx(by_kernel, rel=1e-12), name
        assert vendi_score(x) == pytest.approx(by_gram, rel=1e-12), name


def test_vendi_independent_of_blocks_and_row_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(6).standard_normal((1000, 20)).astype(np.float32)
    whole = vendi_score(x)
    monkeypatch.setattr(diversity, "_ROWS_PER_BLOCK", 7)
    assert vendi_score(x) == pytest.approx(whole, rel=1e-13)
    scales = np.random.default_rng(7).uniform(0.01, 100.0, size=(1000, 1)).astype(np.float32)
    assert vendi_score(x * scales) == pytest.approx(whole, rel=1e-6)  # float32 rows scaled and rounded


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (np.zeros((0, 4)), "non-empty 2-D array"),
        (np.zeros((4, 0)), "non-empty 2-D array"),
        (np.ones(4), "non-empty 2-D array"),
        (np.ones((2, 3, 4)), "non-empty 2-D array"),
        (np.ones((3, 4), dtype=np.int64), "must hold floats"),
        (np.array([[1.0, np.nan], [1.0, 0.0]]), "NaN or infinite"),
        (np.array([[1.0, 0.0], [np.inf, 0.0]], dtype=np.float32), "NaN or infinite"),
        (np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]), "row 1 is all zeros"),
        (np.array([[1e200, 0.0], [0.0, 1.0]]), "too large to square"),
    ],
)
def test_vendi_rejects_bad_input(embeddings: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vendi_score(embeddings)
