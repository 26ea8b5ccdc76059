"""`synthvlm plan`: projections follow the stated arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthvlm.config import RunConfig
from synthvlm.errors import UserError
from synthvlm.plan import Measured, project
from tests.pipeline.helpers import cli

REPO = Path(__file__).resolve().parents[1]


def test_projection_scales_steps_and_pixels():
    config = RunConfig.model_validate({"generate": {"preset": "sdxl", "candidates_per_caption": 2}})
    measured = Measured(2.5, 30, 1024 * 1024, "anchor")
    plan = project(config, captions=500_000, gpus=8, gpu_type="H100", measured=measured, utilisation=1.0)
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
        project(config, captions=10, gpus=1, gpu_type="H100", measured=tiny)
