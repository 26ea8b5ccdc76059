from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from synthvlm.score.ssim import paper_ssim, paper_ssim_batch, ssim_pair

COCO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "coco-mini" / "val2017"


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)


def _skimage(a, b, data_range=255):
    """The reference: skimage on the uint8 images (255), or on them as float64 with `data_range` (2)."""
    if data_range == 255:
        return structural_similarity(a, b)
    return structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=data_range)


def _skimage_recipe(image: Image.Image, size=768, low=336, data_range=255) -> float:
    ref = image.resize((size, size), Image.Resampling.BILINEAR)
    deg = ref.resize((low, low), Image.Resampling.BILINEAR).resize((size, size), Image.Resampling.BILINEAR)
    return _skimage(np.asarray(ref.convert("L")), np.asarray(deg.convert("L")), data_range)


# ssim_pair rounds in float32 (see synthvlm.score.ssim): within 1e-6 by construction, < 1e-7 measured,
# at data_range 255 (exact SSIM of the uint8 images) and 2 (the paper's numbers) alike.
TOL = 2e-7
RANGES = [255, 2]
# Shapes: the paper's pair, the 7x7 minimum, thin, non-square, and heights that split into several
# tiles of up to 40 rows, with an overlapping last tile (47: 2 x 21 rows for 41; 768: 20 x 39 for 762)
# or without (87: 3 x 27 rows).
SHAPES = [(768, 768), (7, 7), (8, 7), (7, 8), (13, 29), (100, 9), (71, 300), (300, 71), (47, 768), (87, 50)]


def _smooth(shape, rng):
    """Generated-like image: 4x4 noise upsampled bicubically."""
    small = Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8))
    return np.asarray(small.resize(shape[::-1], Image.Resampling.BICUBIC))


def _diff(a, b, data_range=255):
    return abs(ssim_pair(a, b, data_range=data_range) - _skimage(a, b, data_range))


@pytest.mark.parametrize("data_range", RANGES)
@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_pair_matches_skimage_on_random(shape, data_range):
    a, b = _pair(shape)
    assert _diff(a, b, data_range) < TOL
    # correlated pair (noisy copy): SSIM well away from 0
    c = np.clip(a.astype(int) + _pair(shape, 1)[0] // 16, 0, 255).astype(np.uint8)
    assert ssim_pair(a, c, data_range=data_range) > 0.5
    assert _diff(a, c, data_range) < TOL


@pytest.mark.parametrize("data_range", RANGES)
@pytest.mark.parametrize("shape", SHAPES)
def test_ssim_pair_matches_skimage_on_smooth_binary_and_dark_images(shape, data_range):
    rng = np.random.default_rng(7)
    x = _smooth(shape, rng)
    assert _diff(x, _smooth(shape, rng), data_range) < TOL
    assert _diff(x, np.clip(x.astype(int) + 3, 0, 255).astype(np.uint8), data_range) < TOL
    binary = [(rng.integers(0, 2, shape) * 255).astype(np.uint8) for _ in range(2)]
    assert _diff(*binary, data_range) < TOL
    dark = [rng.integers(0, 3, shape).astype(np.uint8) for _ in range(2)]
    assert _diff(*dark, data_range) < TOL
    # near-black against black: where data_range 2's tiny C1 makes the luminance term tiny, not 1
    black = np.zeros(shape, np.uint8)
    assert _diff(black, (rng.random(shape) < 0.3).astype(np.uint8), data_range) < TOL


@pytest.mark.parametrize("data_range", RANGES)
@pytest.mark.parametrize("shape", [(7, 7), (30, 30), (47, 768)])
@pytest.mark.parametrize(("u", "v"), [(200, 10), (255, 0), (0, 0), (128, 129), (1, 254), (0, 1)])
def test_ssim_pair_on_constant_images(shape, u, v, data_range):
    a, b = np.full(shape, u, np.uint8), np.full(shape, v, np.uint8)
    c1 = (0.01 * data_range) ** 2
    expected = (2 * u * v + c1) / (u * u + v * v + c1)
    assert abs(ssim_pair(a, b, data_range=data_range) - expected) < TOL
    assert abs(_skimage(a, b, data_range) - expected) < 1e-9
    rng = np.random.default_rng(u)
    assert _diff(a, rng.integers(0, 256, shape, dtype=np.uint8), data_range) < TOL


@pytest.mark.parametrize("data_range", RANGES)
def test_ssim_exact_values(data_range):
    a, _ = _pair((40, 50))
    assert ssim_pair(a, a, data_range=data_range) == 1.0
    const = np.full((30, 30), 200, np.uint8)
    assert ssim_pair(const, const, data_range=data_range) == 1.0
    smooth = _smooth((768, 768), np.random.default_rng(1))
    assert ssim_pair(smooth, smooth, data_range=data_range) == 1.0
    flat = Image.new("RGB", (100, 60), (9, 120, 250))
    assert paper_ssim(flat, size=64, low=20, data_range=data_range) == 1.0


def test_data_range_2_is_the_lower_number_on_the_same_pixels():
    """Smaller constants weigh dark, low-contrast windows fully: the paper's number is below the exact one."""
    x = _smooth((200, 200), np.random.default_rng(2))
    y = np.clip(x.astype(int) + _pair((200, 200))[0] // 32, 0, 255).astype(np.uint8)
    assert ssim_pair(x, y, data_range=2) < ssim_pair(x, y) < 1
    assert ssim_pair(x, y, data_range=255.0) == ssim_pair(x, y)


def test_ssim_pair_rejects_bad_input():
    a, b = _pair((20, 20))
    with pytest.raises(ValueError, match="uint8"):
        ssim_pair(a.astype(np.float64), b)
    with pytest.raises(ValueError, match="one shape"):
        ssim_pair(a, b[:, :19])
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim_pair(a[:6], b[:6])
    with pytest.raises(ValueError, match="data_range must be positive"):
        ssim_pair(a, b, data_range=0)
    with pytest.raises(ValueError, match="mode"):
        paper_ssim(Image.new("RGBA", (20, 20)))


@pytest.mark.parametrize("data_range", RANGES)
def test_paper_ssim_on_synthetic_image_matches_recipe(data_range):
    rng = np.random.default_rng(3)
    smooth = np.kron(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), np.ones((10, 10, 1), np.uint8))
    noisy = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    images = [Image.fromarray(smooth), Image.fromarray(noisy), Image.fromarray(noisy[..., 0])]
    got = paper_ssim_batch(images, size=128, low=56, data_range=data_range)
    want = [_skimage_recipe(im, 128, 56, data_range) for im in images]
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
    paper = paper_ssim_batch(images, size=96, low=40, data_range=2, workers=3)
    assert np.array_equal(paper, [paper_ssim(im, size=96, low=40, data_range=2) for im in images])


@pytest.mark.skipif(not COCO.is_dir(), reason="shared/data/coco-mini is absent")
@pytest.mark.parametrize("data_range", RANGES)
def test_paper_ssim_matches_skimage_on_coco_photos(data_range):
    files = sorted(COCO.glob("*.jpg"))[:6]
    assert len(files) == 6
    images = [Image.open(f) for f in files]
    got = paper_ssim_batch(images, data_range=data_range)
    want = np.array([_skimage_recipe(im, data_range=data_range) for im in images])
    assert np.abs(got - want).max() < 1e-7
    assert ((got > 0.5) & (got < 1.0)).all()
