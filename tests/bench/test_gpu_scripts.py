"""bench/gpu_sdxl.py and bench/gpu_score.py: the FLOP model and the full code paths at toy size on CPU."""

from __future__ import annotations

import importlib.util
import json
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
    import torch
    from diffusers import UNet2DConditionModel

    cfg = json.loads(gpu_sdxl.CONFIGS.read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg["unet"])
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(2.567e9, rel=1e-3)


def test_tiny_run_measures_naive_loop_and_each_variant(gpu_sdxl, tmp_path):
    out = tmp_path / "rows.jsonl"
    args = [
        "--tiny",
        "--device",
        "cpu",
        "--naive-images",
        "2",
        "--variants",
        "1,2:nchw+compile",
        "--batches",
        "1",
    ]
    naive, b1, b2 = gpu_sdxl.main([*args, "--steps", "2", "--size", "64", "--out", str(out)])
    assert naive["name"] == "SDXL 64², 2 steps (tiny), diffusers batch-1 loop, float16"
    assert [b1["name"], b2["name"]] == [
        "SDXL 64², 2 steps (tiny), synthvlm generate stage, batch 1",
        "SDXL 64², 2 steps (tiny), synthvlm generate stage, batch 2, UNet in NCHW layout, torch.compile",
    ]
    for row in (b1, b2):
        assert row["peer_name"] == "diffusers batch-1 loop" and row["unit"] == "s/image"
        assert row["peer"] == naive["s_per_image"] > 0 and row["ours"] > 0
        assert row["ratio"] == pytest.approx(row["peer"] / row["ours"])
        assert row["device"] == "cpu" and row["peak_gib"] is None
    assert [json.loads(line) for line in out.read_text().splitlines()] == [naive, b1, b2]


def test_unknown_variant_option_is_refused(gpu_sdxl, capsys):
    with pytest.raises(SystemExit):
        gpu_sdxl.main(["--tiny", "--device", "cpu", "--variants", "8,16:fp4"])
    assert (
        "unknown variant option(s) ['fp4']; valid: compile, max-autotune, fp8, nchw"
        in capsys.readouterr().err
    )


def test_gpu_score_script_runs_both_comparisons_at_toy_size(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_score", SCRIPT.parent / "gpu_score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "rows.jsonl"
    clip, ssim = module.main(["--device", "cpu", "--tiny", "--images", "4", "--out", str(out)])
    assert clip["unit"] == ssim["unit"] == "images/s"
    assert clip["peer_name"].startswith("torchmetrics") and ssim["peer_name"].startswith("scikit-image")
    for row in (clip, ssim):
        assert row["ours"] > 0 and row["peer"] > 0
        assert row["ratio"] == pytest.approx(row["ours"] / row["peer"])
    diff = float(ssim["notes"].rsplit(" ", 1)[1])
    assert diff < 1e-4
    assert [json.loads(line) for line in out.read_text().splitlines()] == [clip, ssim]
