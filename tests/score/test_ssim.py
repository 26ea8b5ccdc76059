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


@pytest.mark.parametrize("shape", [(768, 768), (7, 7), (8, 7), (13, 29), (100, 9), (71, 300)])
def test_ssim_pair_matches_skimage_on_random(shape):
    a, b = _pair(shape)
    assert abs(ssim_pair(a, b) - structural_similarity(a, b)) < 1e-12
    # correlated pair (noisy copy): SSIM well away from 0
    c = np.clip(a.astype(int) + _pair(shape, 1)[0] // 16, 0, 255).astype(np.uint8)
    assert abs(ssim_pair(a, c) - structural_similarity(a, c)) < 1e-12


def test_ssim_exact_values():
    a, _ = _pair((40, 50))
    assert ssim_pair(a, a) == 1.0
    const = np.full((30, 30), 200, np.uint8)
    other = np.full((30, 30), 10, np.uint8)
    assert ssim_pair(const, const) == 1.0
    c1 = (0.01 * 255) ** 2
    expected = (2 * 200 * 10 + c1) / (200**2 + 10**2 + c1)
    assert abs(ssim_pair(const, other) - expected) < 1e-15
    assert abs(structural_similarity(const, other) - expected) < 1e-12
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
    assert np.abs(got - want).max() < 1e-12
    assert got[0] > got[1]  # the blocky image survives the round trip better than noise


@pytest.mark.skipif(not COCO.is_dir(), reason="shared/data/coco-mini is absent")
def test_paper_ssim_matches_skimage_on_coco_photos():
    files = sorted(COCO.glob("*.jpg"))[:6]
    assert len(files) == 6
    images = [Image.open(f) for f in files]
    got = paper_ssim_batch(images)
    want = np.array([_skimage_recipe(im) for im in images])
    assert np.abs(got - want).max() < 1e-12
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
