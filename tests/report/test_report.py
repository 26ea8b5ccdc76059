"""`synthvlm report`: numbers, grids, escaping, assets and determinism of the HTML quality report."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from synthvlm.cli.report import register
from synthvlm.core import fsio
from synthvlm.core.errors import UserError
from synthvlm.report.build import assets_dir, build_report, collect, grid_indices, keep_rate_curve
from tests.report.helpers import CANDIDATES, CAPTIONS, HOSTILE, SECONDS, TOP_K, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def report(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(run, out=tmp_path_factory.mktemp("out") / "quality.html", grid=3, thumb_size=32)


def test_keep_rate_curve_and_grid_positions():
    thresholds, rate = keep_rate_curve(np.array([0.1, 0.2, 0.2, 0.4]), points=4)
    assert thresholds.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert rate.tolist() == [1.0, 0.75, 0.25, 0.25]
    assert grid_indices(10, 4, size=3) == {
        "top": [0, 1, 2],
        "above": [1, 2, 3],
        "below": [4, 5, 6],
        "bottom": [7, 8, 9],
    }
    assert grid_indices(2, 0, size=3) == {"top": [0, 1], "above": [], "below": [0, 1], "bottom": [0, 1]}


def test_numbers_match_the_run(run):
    data = collect(run, grid=3, target=100_000)
    generate = data["funnel"]["generate"]
    assert (generate["in"], generate["kept"]) == (CAPTIONS * CANDIDATES, CAPTIONS * CANDIDATES - 1)
    assert generate["dropped"] == {"failed_image": 1}
    scores = pq.read_table(run / "score" / "data").to_pylist()
    selection = pq.read_table(run / "select" / "data").to_pylist()
    assert len(scores) == CAPTIONS * CANDIDATES - 1 and len(selection) == TOP_K
    assert (data["pool"], data["selected"], data["key"]) == (CAPTIONS, TOP_K, "weighted")
    assert data["cutoff"] == selection[-1]["weighted"]
    everything, chosen = data["table4"]
    for metric in ("clip", "ssim", "weighted"):
        assert everything[metric] == pytest.approx(np.mean([r[metric] for r in scores]), abs=1e-15)
        assert chosen[metric] == pytest.approx(np.mean([r[metric] for r in selection]), abs=1e-15)
    assert (everything["scored"], chosen["scored"]) == (19, TOP_K)
    # 20 candidates at 0.5 model-seconds each; 4 selected: r = 0.2, hours = 1e5 / 0.2 * 0.5 / 3600.
    assert data["cost"] == {
        "model_seconds": 20 * SECONDS,
        "candidates": 20,
        "seconds_per_image": SECONDS,
        "images_per_second": 2.0,
        "selected": TOP_K,
        "selection_rate": 0.2,
        "target": 100_000,
        "gpu_hours": pytest.approx(100_000 / 0.2 * 0.5 / 3600),
    }
    prov = data["provenance"]
    assert (prov["seed_min"], prov["seed_max"], prov["candidates"], prov["attempts"]) == (1000, 1019, 20, 22)
    assert prov["settings"] == [
        {
            "model_id": "builtin:tiny-sdxl",
            "model_revision": "rev-abc",
            "refiner_id": None,
            "refiner_revision": None,
            "scheduler": "EulerDiscreteScheduler",
            "steps": 2,
            "guidance": 5.0,
            "width": 64,
            "height": 64,
            "dtype": "float32",
            "images": 20,
        }
    ]


def test_grids_follow_the_selection(run):
    grids = collect(run, grid=3)["grids"]
    selection = pq.read_table(run / "select" / "data").column("key").to_pylist()
    assert [r["key"] for r in grids["top"]] == selection[:3]
    assert [r["key"] for r in grids["above"]] == selection[1:4]
    assert [r["rank"] for r in grids["below"]] == [5, 6, 7] and [r["rank"] for r in grids["bottom"]] == [
        8,
        9,
        10,
    ]
    assert all(r["selected"] for r in grids["above"]) and not any(r["selected"] for r in grids["below"])
    ranked = [r for name in ("top", "above", "below", "bottom") for r in grids[name]]
    weighted = [
        r["weighted"] for r in sorted({r["rank"]: r for r in ranked}.values(), key=lambda r: r["rank"])
    ]
    assert weighted == sorted(weighted, reverse=True) and len(weighted) == CAPTIONS


def test_captions_are_escaped_and_nothing_is_external(report):
    html = report.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE not in html and "<script" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html  # the page may load nothing but its own images


def test_assets_are_beside_the_page(report):
    html = report.read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', html)
    assets = assets_dir(report)
    assert assets.name == "quality_assets"
    plots = [s for s in sources if s.endswith(".png")]
    thumbs = [s for s in sources if "/thumbs/" in s]
    assert plots == [
        f"quality_assets/{n}.png" for n in ("hist_clip", "hist_ssim", "hist_weighted", "keep_rate")
    ]
    assert len(thumbs) == 12 and len(set(thumbs)) == CAPTIONS  # 4 grids of 3; ranks 2 and 3 appear twice
    for src in sources:
        with Image.open(report.parent / src) as im:
            assert im.size == (
                (500, 320) if src.endswith(".png") else (32, 32)
            )  # thumbnails, not full images
    assert sorted(p.name for p in (assets / "thumbs").iterdir()) == sorted(Path(t).name for t in set(thumbs))


def test_report_is_deterministic(run, report, tmp_path):
    again = build_report(run, out=tmp_path / "quality.html", grid=3, thumb_size=32)

    def digest(root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".html"
        }

    assert digest(assets_dir(again)) == digest(assets_dir(report))
    assert again.read_bytes() == report.read_bytes()


def test_datasets_side_by_side(run, tmp_path):
    summary = {
        "name": "coco <b>",
        "source": "x",
        "format": "coco",
        "pairs": 5,
        "scored": 4,
        "failed": {"missing_image": 1},
        "images": 4,
        "clip_mean": 0.25,
        "ssim_mean": 0.5,
        "weighted_mean": 0.5,
        "score": {**collect(run)["score"], "clip_model": "openai/clip-vit-base-patch32"},
    }
    fsio.write_json(tmp_path / "coco" / "summary.json", summary)
    out = build_report(run, out=tmp_path / "r.html", datasets=[tmp_path / "coco"], grid=1)
    html = out.read_text(encoding="utf-8")
    row = re.search(r'<tr class="table4-dataset">(.*?)</tr>', html, re.S).group(1)
    assert "coco &lt;b&gt;" in row and "4 of 5" in row and "0.2500" in row and "0.5000" in row
    assert "missing_image 1" in row and "not comparable: clip_model differ" in row
    with pytest.raises(UserError, match="no summary.json"):
        build_report(run, out=tmp_path / "r.html", datasets=[tmp_path / "nothing"])


def test_cli(run, tmp_path):
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["report", str(run), "--out", str(tmp_path / "cli.html"), "--grid", "2", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"report: {tmp_path / 'cli.html'}\n"
    assert len(re.findall(r'<div class="card', (tmp_path / "cli.html").read_text(encoding="utf-8"))) == 8
    result = CliRunner().invoke(app, ["report", str(tmp_path / "not-a-run")])
    assert isinstance(result.exception, UserError) and "not a synthvlm run directory" in str(result.exception)
