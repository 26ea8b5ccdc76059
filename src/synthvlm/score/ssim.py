"""SSIM as the SynthVLM recipe scores an image: how much detail survives a 768 -> 336 -> 768 round trip.

Recipe (paper text): resize the generated image to 768x768 (PIL bilinear), resize that to 336x336 and
back to 768x768 (PIL bilinear), convert both to grayscale (PIL "L") and compare them with scikit-image's
``structural_similarity`` at its defaults: 7x7 uniform window, K1=0.01, K2=0.03, ``data_range`` 255 (the
uint8 dtype range), sample covariance (N/(N-1)), mean over the image cropped by 3 pixels on each side.

The authors' released code (github.com/starriver030515/SynthVLM at f1a47ff) ships only the CLIPScore step
(``clipscore/clipscore.py``); it contains no SSIM call, so the settings above are the paper's description
read with scikit-image defaults on uint8 grayscale, no dtype cast before the call.

``ssim_pair`` computes that same value (to ~1e-15) several times faster than scikit-image: it works on
tiles of 32 rows that stay in cache, needs only four window sums (x, y, x^2 + y^2, xy: the two variances
only ever appear summed), takes them with shifted adds in float32 (exact: all are integers below 2**24),
and forms the SSIM map from integer-valued float64 terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

WIN = 7
K1 = 0.01
K2 = 0.03
DATA_RANGE = 255.0
_N = WIN * WIN
_C1 = (K1 * DATA_RANGE) ** 2
_C2 = (K2 * DATA_RANGE) ** 2


_TILE_ROWS = 32  # output rows per tile: keeps the working set in L2, which is what makes this fast
_C1S = _C1 * _N * _N  # C1 in units of window sums squared
_C2S = _C2 * _N * (_N - 1)  # C2 in units of N * (N - 1) * variance


def _box7(m: np.ndarray) -> np.ndarray:
    """Valid-mode 7x7 window sums over the last two axes (4 shifted adds per axis)."""
    d2 = m[:, :-1] + m[:, 1:]
    d4 = d2[:, :-2] + d2[:, 2:]
    v = d4[:, :-3] + d2[:, 4:-1]
    v += m[:, WIN - 1 :]
    d2 = v[..., :-1] + v[..., 1:]
    d4 = d2[..., :-2] + d2[..., 2:]
    out = d4[..., :-3] + d2[..., 4:-1]
    out += v[..., WIN - 1 :]
    return out


def ssim_pair(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 2-D uint8 images: skimage's ``structural_similarity(a, b)`` defaults, but faster."""
    if a.dtype != np.uint8 or b.dtype != np.uint8 or a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"ssim_pair needs two 2-D uint8 arrays of one shape, got {a.dtype}{a.shape}, {b.dtype}{b.shape}."
        )
    if min(a.shape) < WIN:
        raise ValueError(f"Images must be at least {WIN}x{WIN} pixels for SSIM, got {a.shape}.")
    height, width = a.shape
    out_rows = height - WIN + 1
    maps = np.empty((4, _TILE_ROWS + WIN - 1, width), np.float32)
    total = 0.0
    for start in range(0, out_rows, _TILE_ROWS):
        stop = min(start + _TILE_ROWS, out_rows)
        m = maps[:, : stop - start + WIN - 1]
        x, y, sq, xy = m
        np.copyto(x, a[start : stop + WIN - 1], casting="unsafe")
        np.copyto(y, b[start : stop + WIN - 1], casting="unsafe")
        np.multiply(x, x, out=sq)
        np.multiply(y, y, out=xy)
        sq += xy
        np.multiply(x, y, out=xy)
        # Window sums of x, y, x^2 + y^2 and xy are integers below 2**24, hence exact in float32.
        sx, sy, sxx_syy, sxy = _box7(m).astype(np.float64)
        # With u = s/N and v = (N*s2 - s*s)/(N*(N-1)), the luminance factor is scaled by N**2 and the
        # contrast-structure factor by N*(N-1); every term but the constants is then an exact integer.
        lum_num = sx * sy
        lum_num *= 2
        lum_den = sx * sx
        sy *= sy
        lum_den += sy
        cs_den = sxx_syy
        cs_den *= _N
        cs_den -= lum_den
        cs_den += _C2S
        lum_den += _C1S
        cs_num = sxy
        cs_num *= 2 * _N
        cs_num -= lum_num
        cs_num += _C2S
        lum_num += _C1S
        lum_num *= cs_num
        lum_den *= cs_den
        lum_num /= lum_den
        total += float(lum_num.sum(dtype=np.float64))
    return total / (out_rows * (width - WIN + 1))


def _round_trip(image: Image.Image, size: int, low: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's reference and degraded grayscale images for one generated image."""
    if image.mode not in ("RGB", "L"):
        raise ValueError(f"SSIM expects an RGB or L image, got mode {image.mode!r}; convert it first.")
    ref = image.resize((size, size), Image.Resampling.BILINEAR)
    degraded = ref.resize((low, low), Image.Resampling.BILINEAR).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    return np.asarray(ref.convert("L")), np.asarray(degraded.convert("L"))


def paper_ssim(image: Image.Image, *, size: int = 768, low: int = 336) -> float:
    """The paper's SSIM of one image against its size->low->size bilinear round trip, in grayscale."""
    return ssim_pair(*_round_trip(image, size, low))


def paper_ssim_batch(images: Sequence[Image.Image], *, size: int = 768, low: int = 336) -> np.ndarray:
    """``paper_ssim`` for each image, as a float64 array in input order."""
    return np.array([paper_ssim(im, size=size, low=low) for im in images], dtype=np.float64)


def ssim_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of (N, H, W) float images on a 0..255 scale, same definition as ``ssim_pair``."""
    import torch
    import torch.nn.functional as F

    if a.ndim != 3 or a.shape != b.shape or not a.is_floating_point():
        raise ValueError(
            f"ssim_torch needs two float (N, H, W) tensors of one shape, got {a.shape}, {b.shape}."
        )
    if min(a.shape[1:]) < WIN:
        raise ValueError(f"Images must be at least {WIN}x{WIN} pixels for SSIM, got {tuple(a.shape[1:])}.")
    # Second moments are shift-invariant: take them on centred values so float32 keeps its precision.
    xc = a - DATA_RANGE / 2
    yc = b.to(a.dtype) - DATA_RANGE / 2
    means = F.avg_pool2d(torch.stack([xc, yc, xc * xc, yc * yc, xc * yc], dim=1), WIN, stride=1)
    mx, my, mxx, myy, mxy = means.unbind(dim=1)
    cov_norm = _N / (_N - 1)
    vx = cov_norm * (mxx - mx * mx)
    vy = cov_norm * (myy - my * my)
    vxy = cov_norm * (mxy - mx * my)
    ux = mx + DATA_RANGE / 2
    uy = my + DATA_RANGE / 2
    ssim_map = ((2 * ux * uy + _C1) * (2 * vxy + _C2)) / ((ux * ux + uy * uy + _C1) * (vx + vy + _C2))
    return ssim_map.mean(dim=(1, 2))
