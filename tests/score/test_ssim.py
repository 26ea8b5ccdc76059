from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from synthvlm.score.ssim import paper_ssim, paper_ssim_batch, ssim_pair, ssim_torch

COCO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "coco-mini" / "val2017"


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)


def _skimage_recipe(image: Image.Image, size=768, low=336) -> float:
    ref = image.resize((size, size), Image.Resampling.BILINEAR)
    deg = ref.resize((low, low), Image.Resampling.BILINEAR).resize((size, size), Image.Resampling.BILINEAR)
    return structural_similarity(np.asarray(ref.convert("L")), np.asarray(deg.convert("L")))


# ssim_pair rounds in float32 (see synthvlm.score.ssim): within 1e-6 by construction, < 1e-7 measured.
TOL = 2e-7
# Shapes: the paper's pair, the 7x7 minimum, thin, non-square, and heights that split into several
# tiles of up to 40 rows, with an overlapping last tile (47: 2 x 21 rows for 41; 768: 20 x 39 for 762)
# or without (87: 3 x 27 rows).
SHAPES = [(768, 768), (7, 7), (8, 7), (7, 8), (13, 29), (100, 9), (71, 300), (300, 71), (47, 768), (87, 50)]


def _smooth(shape, rng):
    """Generated-like image: 4x4 noise upsampled bicubically."""
    small = Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8))
    return np.asarray(small.resize(shape[::-1], Image.Resampling.BICUBIC))


def _diff(a, b):
    return abs(ssim_pair(a, b) - structural_similarity(a, b))


@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_pair_matches_skimage_on_random(shape):
    a, b = _pair(shape)
    assert _diff(a, b) < TOL
    # correlated pair (noisy copy): SSIM well away from 0
    c = np.clip(a.astype(int) + _pair(shape, 1)[0] // 16, 0, 255).astype(np.uint8)
    assert ssim_pair(a, c) > 0.5
    assert _diff(a, c) < TOL


@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_pair_matches_skimage_on_smooth_binary_and_dark_images(shape):
    rng = np.random.default_rng(7)
    x = _smooth(shape, rng)
    assert _diff(x, _smooth(shape, rng)) < TOL
    assert _diff(x, np.clip(x.astype(int) + 3, 0, 255).astype(np.uint8)) < TOL
    binary = [(rng.integers(0, 2, shape) * 255).astype(np.uint8) for _ in range(2)]
    assert _diff(*binary) < TOL
    dark = [rng.integers(0, 3, shape).astype(np.uint8) for _ in range(2)]
    assert _diff(*dark) < TOL


@pytest.mark.parametrize("shape", [(7, 7), (30, 30), (47, 768)])
@pytest.mark.parametrize(("u", "v"), [(200, 10), (255, 0), (0, 0), (128, 129), (1, 254)])
def test_ssim_pair_on_constant_images(shape, u, v):
    a, b = np.full(shape, u, np.uint8), np.full(shape, v, np.uint8)
    expected = (2 * u * v + (0.01 * 255) ** 2) / (u * u + v * v + (0.01 * 255) ** 2)
    assert abs(ssim_pair(a, b) - expected) < TOL
    assert abs(structural_similarity(a, b) - expected) < 1e-12
    rng = np.random.default_rng(u)
    assert _diff(a, rng.integers(0, 256, shape, dtype=np.uint8)) < TOL


def test_ssim_exact_values():
    a, _ = _pair((40, 50))
    assert ssim_pair(a, a) == 1.0
    const = np.full((30, 30), 200, np.uint8)
    assert ssim_pair(const, const) == 1.0
    smooth = _smooth((768, 768), np.random.default_rng(1))
    assert ssim_pair(smooth, smooth) == 1.0
    assert paper_ssim(Image.new("RGB", (100, 60), (9, 120, 250)), size=64, low=20) == 1.0


def test_ssim_pair_rejects_bad_input():
    a, b = _pair((20, 20))
    with pytest.raises(ValueError, match="uint8"):
        ssim_pair(a.astype(np.float64), b)
    with pytest.raises(ValueError, match="one shape"):
        ssim_pair(a, b[:, :19])
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim_pair(a[:6], b[:6])
    with pytest.raises(ValueError, match="mode"):
        paper_ssim(Image.new("RGBA", (20, 20)))


def test_paper_ssim_on_synthetic_image_matches_recipe():
    rng = np.random.default_rng(3)
    smooth = np.kron(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), np.ones((10, 10, 1), np.uint8))
    noisy = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    images = [Image.fromarray(smooth), Image.fromarray(noisy), Image.fromarray(noisy[..., 0])]
    got = paper_ssim_batch(images, size=128, low=56)
    want = [_skimage_recipe(im, 128, 56) for im in images]
    assert got.dtype == np.float64 and got.shape == (3,)
    assert np.abs(got - want).max() < TOL
    assert got[0] > got[1]  # the blocky image survives the round trip better than noise


def test_paper_ssim_batch_on_threads_gives_the_same_values_in_order():
    rng = np.random.default_rng(5)
    images = [Image.fromarray(rng.integers(0, 256, (90 + 7 * i, 120, 3), dtype=np.uint8)) for i in range(7)]
    serial = paper_ssim_batch(images, size=96, low=40)
    assert np.array_equal(paper_ssim_batch(images, size=96, low=40, workers=3), serial)
    assert np.array_equal(serial, [paper_ssim(im, size=96, low=40) for im in images])
    assert len(set(serial.tolist())) == 7  # distinct values: an order mix-up would show


@pytest.mark.skipif(not COCO.is_dir(), reason="shared/data/coco-mini is absent")
def test_paper_ssim_matches_skimage_on_coco_photos():
    files = sorted(COCO.glob("*.jpg"))[:6]
    assert len(files) == 6
    images = [Image.open(f) for f in files]
    got = paper_ssim_batch(images)
    want = np.array([_skimage_recipe(im) for im in images])
    assert np.abs(got - want).max() < 1e-7
    assert ((got > 0.5) & (got < 1.0)).all()


def test_ssim_torch_matches_skimage():
    import torch

    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (3, 40, 52), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    b[2] = a[2]
    want = np.array([structural_similarity(x, y) for x, y in zip(a, b, strict=True)])
    got64 = ssim_torch(torch.from_numpy(a).double(), torch.from_numpy(b).double())
    got32 = ssim_torch(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert got64.dtype == torch.float64 and got64.shape == (3,)
    assert np.abs(got64.numpy() - want).max() < 1e-12
    assert np.abs(got32.numpy() - want).max() < 1e-5
    assert got64[2].item() == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="float"):
        ssim_torch(torch.from_numpy(a), torch.from_numpy(b))


@pytest.mark.gpu
def test_ssim_torch_on_cuda_matches_the_exact_cpu_value():
    import torch

    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (4, 200, 180), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    want = np.array([ssim_pair(x, y) for x, y in zip(a, b, strict=True)])
    got = ssim_torch(torch.from_numpy(a).cuda().float(), torch.from_numpy(b).cuda().float())
    assert got.device.type == "cuda" and got.shape == (4,)
    assert np.abs(got.cpu().double().numpy() - want).max() < 1e-4
