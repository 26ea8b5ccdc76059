"""Diversity of one embedding set: the Vendi score (Friedman & Dieng 2023) of the cosine kernel.

With X the n x d matrix of L2-normalised rows and K = X X^T, the Vendi score is exp of the Shannon entropy
of the eigenvalues of K / n: the effective number of distinct points, 1 for n copies of one point and n
for n orthogonal points. K / n and the d x d matrix X^T X / n have the same non-zero eigenvalues, so the
score is taken from the latter: O(n d^2) time and O(d^2) memory instead of O(n^2 d) and O(n^2), which is
what makes a million CLIP embeddings a matter of seconds.
"""

from __future__ import annotations

import math

import numpy as np

from synthvlm.report.gap import map_tiles

# Rows normalised and multiplied per block: 16,384 x 512 float64 is 64 MiB, whatever the input's size.
_ROWS_PER_BLOCK = 16_384


def vendi_score(embeddings: np.ndarray) -> float:
    """The Vendi score of the rows of `embeddings` under the cosine kernel (Friedman & Dieng 2023).

    Rows (float16, float32 or float64, any length) are scaled to unit length in float64, and the d x d
    Gram matrix X^T X / n is summed block by block in float64 (blocks spread over the cores, summed in
    order); its non-zero eigenvalues are those of K / n. An
    eigenvalue below 0 (rounding: the matrix is positive semi-definite) counts as 0, and 0 log 0 as 0.
    A zero row has no direction, so it is refused rather than guessed.
    """
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"embeddings must be a non-empty 2-D array (points x dimensions), got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"embeddings must hold floats (float16, float32 or float64), got dtype {x.dtype}")
    n, d = x.shape

    def block_gram(rows: slice) -> np.ndarray:
        block = x[rows].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        if not np.isfinite(norms).all():
            if np.isfinite(block).all():
                raise ValueError("embeddings hold values too large to square in float64 (above ~1e154)")
            raise ValueError("embeddings hold NaN or infinite values")
        if (norms == 0).any():
            row = rows.start + int(np.flatnonzero(norms == 0)[0])
            raise ValueError(
                f"embeddings row {row} is all zeros: the cosine kernel needs a direction per row"
            )
        block /= norms[:, None]
        # block.T @ block on one buffer: numpy hands it to BLAS syrk, half the work of a general product.
        return block.T @ block

    gram = np.zeros((d, d))
    blocks = [slice(start, min(start + _ROWS_PER_BLOCK, n)) for start in range(0, n, _ROWS_PER_BLOCK)]
    for part in map_tiles(block_gram, blocks):
        gram += part
    from threadpoolctl import threadpool_limits

    # A d x d eigenproblem is small work: with OpenBLAS threads it took 2.5 s instead of 0.03 s (d = 512)
    # in about half the processes on a shared 2-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        eigenvalues = np.linalg.eigvalsh(gram / n)
    p = eigenvalues[eigenvalues > 0]
    return math.exp(-float(np.sum(p * np.log(p))))
