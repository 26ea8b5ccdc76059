"""`synthvlm plan`: projections follow the stated arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthvlm.config import RunConfig
from synthvlm.core.errors import UserError
from synthvlm.plan import Measured, anchor, costs, measured_from_run, project
from tests.pipeline.helpers import cli

REPO = Path(__file__).resolve().parents[1]


def test_projection_scales_steps_and_pixels():
    config = RunConfig.model_validate({"generate": {"preset": "sdxl", "candidates_per_caption": 2}})
    measured = Measured(2.5, 30, 1024 * 1024, "anchor")
    plan = project(
        config, captions=500_000, gpus=8, gpu_type="H100", costs={"sdxl": measured}, utilisation=1.0
    )
    assert plan.images == 1_000_000
    assert plan.seconds_per_image == pytest.approx(5.0)  # 60 steps / 30
    assert plan.gpu_hours == pytest.approx(1_000_000 * 5.0 / 3600)
    assert plan.wall_hours == pytest.approx(plan.gpu_hours / 8)


def test_plan_cli_with_measured_h100_anchor():
    result = cli(
        "plan", str(REPO / "configs" / "synthvlm-paper.yaml"), "--gpus", "4", "--captions", "100000", "--json"
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["images"] == 100_000
    assert plan["seconds_per_image"] == pytest.approx(1.293 * 2)  # measured at 30 steps, the recipe has 60
    assert plan["gpu_hours"] == pytest.approx(100_000 * 1.293 * 2 / 3600)
    assert plan["wall_hours"] == pytest.approx(plan["gpu_hours"] / 4 / 0.9)
    assert any("measured anchor: synthvlm generate stage on one H100" in a for a in plan["assumptions"])
    assert plan["assumptions"][2] == (
        "12 of the 60 steps run on the refiner (stabilityai/stable-diffusion-xl-refiner-1.0); the measured "
        "cost had no refiner, so they are counted at the measured model's cost per step"
    )


def test_anchor_follows_the_compile_setting_and_names_unmeasured_ones():
    def config(**generate):
        return RunConfig.model_validate({"generate": {"preset": "sdxl-base", **generate}})

    def first(recipe: RunConfig):
        return recipe.generate.pool()[0]

    eager, compiled = anchor("H100", first(config())), anchor("H100", first(config(compile=True)))
    assert (eager.seconds_per_image, compiled.seconds_per_image) == (1.293, 0.985)
    assert "no torch.compile" in eager.source and "torch.compile in its default mode" in compiled.source
    fast = anchor("H100", first(config(compile="max-autotune", quantize="fp8")))
    assert fast.seconds_per_image == 0.985
    assert fast.source == (
        compiled.source + "; the recipe's compile: max-autotune, quantize: fp8 has no measured anchor yet"
    )
    plan = project(config(), captions=10, gpus=1, gpu_type="H100", costs={"sdxl-base": eager})
    assert not any("refiner" in a for a in plan.assumptions)  # sdxl-base has none
    with pytest.raises(UserError, match="no measured cost for L4"):
        anchor("L4", first(config()))


def test_cost_measured_from_a_run_keeps_its_model_and_refiner(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for folder in ("timing", "data"):
        (tmp_path / "generate" / folder).mkdir(parents=True)
    keys = [["k0", "k1"], ["k2", "k3"]]
    for i, seconds in enumerate(([1.0, 2.0], [3.0, 6.0])):
        table = pa.table({"key": keys[i], "seconds": seconds})
        pq.write_table(table, tmp_path / "generate" / "timing" / f"part-{i:05d}.parquet")
        meta = {"steps": [40] * 2, "width": [512] * 2, "height": [768] * 2, "model_id": ["m"] * 2}
        meta = {"key": keys[i], **meta, "refiner_id": ["r"] * 2}
        pq.write_table(pa.table(meta), tmp_path / "generate" / "data" / f"part-{i:05d}.parquet")
    config = RunConfig.model_validate(
        {
            "generate": {
                "preset": "sdxl",
                "model": "m",
                "refiner": "r",
                "steps": 40,
                "width": 512,
                "height": 768,
            }
        }
    )
    measured = measured_from_run(tmp_path, config)
    assert measured == {"sdxl": Measured(3.0, 40, 512 * 768, f"run {tmp_path}", "m", "r")}
    assert costs(config, gpu_type="L4", run=tmp_path) == measured  # a run's own cost beats any anchor
    plan = project(config, captions=4, gpus=2, gpu_type="H100", costs=measured, utilisation=1.0)
    assert (plan.seconds_per_image, plan.gpu_hours) == (3.0, 12.0 / 3600)
    assert not any("run on the refiner" in a for a in plan.assumptions)  # measured with this refiner
    other = config.updated("generate", refiner="r2")
    plan = project(other, captions=4, gpus=2, gpu_type="H100", costs=measured)
    assert plan.assumptions[2] == (
        "8 of the 40 steps run on the refiner (r2); the measured cost had refiner r, so they are "
        "counted at the measured model's cost per step"
    )


def test_a_mixed_pool_adds_each_generator_share_at_its_own_cost():
    config = RunConfig.model_validate(
        {
            "generate": {
                "candidates_per_caption": 4,
                "generators": [
                    {"preset": "flux1-schnell", "share": 0.75},
                    {"preset": "sana-sprint", "share": 0.25},
                ],
            }
        }
    )
    per_image = costs(config, gpu_type="H100")
    assert per_image["flux1-schnell"].seconds_per_image == 1.1 and per_image["sana-sprint"].steps == 1
    assert "arXiv 2503.09641" in per_image["sana-sprint"].source
    plan = project(config, captions=1000, gpus=2, gpu_type="H100", costs=per_image, utilisation=1.0)
    rows = {r["generator"]: r for r in plan.generators}
    assert (rows["flux1-schnell"]["images"], rows["sana-sprint"]["images"]) == (3000, 1000)
    assert rows["flux1-schnell"]["seconds_per_image"] == pytest.approx(1.1)  # 4 steps, as published
    assert rows["sana-sprint"]["seconds_per_image"] == pytest.approx(0.2)  # 2 steps, published at 1
    assert plan.gpu_hours == pytest.approx((3000 * 1.1 + 1000 * 0.2) / 3600)
    assert plan.seconds_per_image == pytest.approx((3000 * 1.1 + 1000 * 0.2) / 4000)
    assert plan.assumptions[-3].endswith("shared flux1-schnell 75%, sana-sprint 25% (expected counts)")
    with pytest.raises(UserError, match="--seconds-per-image is one generator's cost"):
        costs(config, gpu_type="H100", seconds_per_image=1.0)
    no_figure = config.updated("generate", generators=[{"preset": "qwen-image"}])
    with pytest.raises(UserError, match="no measured or published cost of Qwen/Qwen-Image"):
        costs(no_figure, gpu_type="H100")


def test_plan_needs_a_cost_for_unknown_gpus():
    result = cli(
        "plan",
        str(REPO / "configs" / "synthvlm-paper.yaml"),
        "--gpus",
        "2",
        "--captions",
        "10",
        "--gpu-type",
        "L4",
    )
    assert result.returncode == 2 and "no measured cost for L4" in result.stderr


def test_plan_refuses_costs_measured_on_another_model():
    config = RunConfig.model_validate({"generate": {"preset": "sdxl"}})
    tiny = Measured(0.07, 2, 64 * 64, "run R", "builtin:tiny-sdxl")
    with pytest.raises(UserError, match="costs do not transfer between models"):
        project(config, captions=10, gpus=1, gpu_type="H100", costs={"sdxl": tiny})


def test_plan_without_captions_counts_the_recipes_inputs():
    from typer.testing import CliRunner

    from synthvlm.cli import app

    demo = str(REPO / "configs" / "demo.yaml")
    result = CliRunner().invoke(app, ["plan", demo, "--gpus", "2", "--seconds-per-image", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    # demo_captions.jsonl: 52 lines, one bad JSON line and one empty caption -> 50 captions, 2 candidates each
    assert (plan["captions"], plan["images"]) == (50, 100)
    assert plan["assumptions"][0] == "50 captions in the recipe's inputs; curation keeps fewer"
