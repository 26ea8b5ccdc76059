"""bench/gpu_sdxl.py: the FLOP model and the full code path at toy size on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_sdxl.py"


@pytest.fixture(scope="module")
def gpu_sdxl():
    spec = importlib.util.spec_from_file_location("gpu_sdxl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flops_model_matches_published_figures(gpu_sdxl):
    # 30 steps at 1024² with guidance: 2 * 6.76 * 30 + 10.5 = 416.1 TFLOP per image.
    assert gpu_sdxl.flops_per_image(30, 1024) == pytest.approx(416.1e12)
    assert gpu_sdxl.flops_per_image(30, 512) == pytest.approx(416.1e12 / 4)


def test_published_config_builds_real_sizes_on_meta_device(gpu_sdxl):
    import json

    import torch
    from diffusers import UNet2DConditionModel

    cfg = json.loads(gpu_sdxl.CONFIGS.read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg["unet"])
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(2.567e9, rel=1e-3)


def test_tiny_run_measures_both_paths(gpu_sdxl):
    (row,) = gpu_sdxl.main(
        ["--tiny", "--device", "cpu", "--images", "2", "--batch-size", "2", "--steps", "2", "--size", "64"]
    )
    assert row["peer_name"] == "diffusers batch-1 loop" and row["unit"] == "s/image"
    assert row["ours"] > 0 and row["peer"] > 0
    assert row["ratio"] == pytest.approx(row["peer"] / row["ours"])
