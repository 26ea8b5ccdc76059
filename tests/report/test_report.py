"""`synthvlm report`: numbers, grids, escaping, assets and determinism of the HTML quality report."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from synthvlm import pipeline
from synthvlm.cli.report import register
from synthvlm.core import fsio, schema
from synthvlm.core.driver import needs_first
from synthvlm.core.errors import UserError
from synthvlm.report.build import (
    assets_dir,
    build_report,
    collect,
    cost,
    grid_indices,
    keep_rate_curve,
    pending,
    threshold_axis,
    timing_caveat,
)
from synthvlm.report.caption_stats import sample_captions, sample_positions
from synthvlm.report.diversity import vendi_score
from tests.report.helpers import (
    CANDIDATES,
    CAPTIONS,
    HOSTILE,
    LONG_ID,
    REPETITIVE,
    SECONDS,
    TOP_K,
    ingested,
    make_ingested_run,
    make_run,
)

TINY_CAVEAT = (
    "These timings come from builtin:tiny-sdxl, a tiny built-in test model on CPU: they are not GPU costs, "
    "so no GPU-hours are projected from them. For a GPU estimate, run `synthvlm plan RECIPE --gpus N` on the "
    "recipe with the real model."
)
FILTERS = [
    "alphanumeric_filter",
    "character_repetition_filter",
    "flagged_words_filter",
    "special_characters_filter",
    "word_repetition_filter",
]


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
    assert data["columns"] == data["metrics"] == ["clip", "ssim", "weighted"]
    for metric in ("clip", "ssim", "weighted"):
        assert everything["means"][metric] == pytest.approx(np.mean([r[metric] for r in scores]), abs=1e-15)
        assert chosen["means"][metric] == pytest.approx(np.mean([r[metric] for r in selection]), abs=1e-15)
    assert (everything["scored"], chosen["scored"]) == (19, TOP_K)
    images = schema.embedding_matrix(pq.read_table(run / "score" / "embeddings").column("image_emb"))
    keys = pq.read_table(run / "score" / "embeddings").column("key").to_pylist()
    chosen_rows = [keys.index(r["key"]) for r in selection]
    assert everything["vendi"] == pytest.approx(vendi_score(images), rel=1e-12)
    assert chosen["vendi"] == pytest.approx(vendi_score(images[chosen_rows]), rel=1e-12)
    [generator] = data["generators"]  # one generator: the accounting of `synthvlm status`, its licence
    assert {k: generator[k] for k in ("name", "preset", "licence", "candidates", "failed", "selected")} == {
        "name": "tiny",
        "preset": "tiny",
        "licence": "apache-2.0",
        "candidates": 20,
        "failed": 1,
        "selected": TOP_K,
    }
    assert generator["means_all"] == everything["means"] and generator["vendi_selected"] == chosen["vendi"]
    # 20 candidates at 0.5 model-seconds each; 4 selected: r = 0.2. A tiny model on CPU: no GPU-hours.
    assert data["cost"] == {
        "model_seconds": 20 * SECONDS,
        "candidates": 20,
        "seconds_per_image": SECONDS,
        "images_per_second": 2.0,
        "selected": TOP_K,
        "selection_rate": 0.2,
        "target": 100_000,
        "gpu_hours": None,
        "caveat": TINY_CAVEAT,
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


def test_gpu_hours_only_from_gpu_timings(run, report):
    real = cost(run, selected=TOP_K, target=100_000, model_ids=["stabilityai/sdxl"], device="cuda")
    assert real["caveat"] is None
    assert real["gpu_hours"] == pytest.approx(100_000 / 0.2 * 0.5 / 3600)  # K / r * s / 3600
    assert timing_caveat(["stabilityai/sdxl"], "cpu") == (
        "These timings come from the CPU (generate.device: cpu): they are not GPU costs, so no GPU-hours are "
        "projected from them. For a GPU estimate, run `synthvlm plan RECIPE --gpus N` on the recipe with the "
        "real model."
    )
    assert timing_caveat(["stabilityai/sdxl", "builtin:tiny-sdxl"], "auto").startswith(
        "These timings come from builtin:tiny-sdxl, a tiny built-in test model: they are not GPU costs"
    )
    assert timing_caveat(["stabilityai/sdxl"], "auto") is None
    html = report.read_text(encoding="utf-8")
    assert f'<p class="warn" id="cost-caveat">{TINY_CAVEAT}</p>' in html
    assert 'id="gpu-hours"' not in html and "GPU-hours(K)" not in html


def test_unfinished_stages_say_why(run, tmp_path):
    part = tmp_path / "part"
    make_ingested_run(part)
    data = collect(part)
    where = part.resolve()
    messages = {s: f"{s} has not run: run `synthvlm {s} --run {where}`" for s in pipeline.ORDER[1:]}
    assert data["pending"] == {s: messages[s] for s in ("curate", "generate", "score", "select", "export")}
    # The same instruction as the pipeline's own refusal.
    assert (
        messages["curate"].split(": ", 1)[1]
        == str(needs_first(where, "generate", "curate")).split(": ", 1)[1]
    )
    assert data["waiting"] == {
        "captions": None,
        "table4": messages["curate"],
        "distributions": messages["curate"],
        "grids": messages["curate"],
        "provenance": messages["curate"],
        "generators": messages["curate"],
        "cost": messages["curate"],
    }
    assert collect(run)["pending"] == {
        "export": f"export has not run: run `synthvlm export --run {run.resolve()}`"
    }
    assert pending("R", ["score"], {"score": {"complete": False, "tasks_done": 1, "tasks_total": 3}}) == {
        "score": "score has not finished (1/3 shards): run `synthvlm score --run R` to resume"
    }
    html = build_report(part, out=tmp_path / "part.html").read_text(encoding="utf-8")
    assert html.count(f'<p class="note waiting">{messages["curate"]}</p>') == 6  # table 4, plots, images, ...
    for stage in ("curate", "generate", "score", "select", "export"):
        assert f'<td>–</td><td><span class="waiting">{messages[stage]}</span></td>' in html
    assert "No generation timings" not in html and 'id="caption-stats"' in html


def test_caption_statistics_of_the_ingested_captions(run):
    stats = collect(run)["captions"]
    values = {f["name"]: f.pop("_values") for f in stats["filters"]}
    assert (stats["total"], stats["sampled"], stats["recipe"], stats["kept_by_all"]) == (
        12,
        12,
        "synthvlm",
        10,
    )
    bounds = [(f["name"], f["low_name"], f["low"], f["high_name"], f["high"]) for f in stats["filters"]]
    assert bounds == [
        ("alphanumeric_filter", "min_ratio", 0.6, "max_ratio", float(sys.maxsize)),
        ("character_repetition_filter", "min_ratio", 0.0, "max_ratio", 0.09373663),
        ("flagged_words_filter", "min_ratio", 0.0, "max_ratio", 0.0),
        ("special_characters_filter", "min_ratio", 0.16534802, "max_ratio", 0.42023757),
        ("word_repetition_filter", "min_ratio", 0.0, "max_ratio", 0.03085751),
    ]
    counts = [(f["below"], f["above"], f["kept"]) for f in stats["filters"]]
    assert counts == [(1, 0, 11), (0, 1, 11), (0, 0, 12), (0, 1, 11), (0, 1, 11)]
    assert (
        stats["filters"][0]["statistic"]
        == "Share of alphanumeric characters (str.isalnum) among all characters"
    )
    # The two captions curate dropped, by the values curate compares (caption 3 is the hostile one: 18 of 25).
    assert values["alphanumeric_filter"][[0, 3, 11]].tolist() == pytest.approx([28 / 36, 18 / 25, 4 / 29])
    assert values["word_repetition_filter"][[0, 10]].tolist() == [0.0, 1.0]
    assert values["flagged_words_filter"].tolist() == [0.0] * 12


def test_caption_sample_is_evenly_spaced(run, tmp_path):
    assert sample_positions(12, 6).tolist() == [0, 2, 4, 6, 8, 10]
    assert sample_positions(5, 6).tolist() == [0, 1, 2, 3, 4]
    assert sample_captions(run, size=6) == (ingested()[::2], 12)
    stats = collect(run, caption_sample=6)["captions"]
    assert (stats["sampled"], stats["kept_by_all"]) == (6, 5)  # REPETITIVE is the 11th caption
    assert ingested()[10] == REPETITIVE
    html = build_report(run, out=tmp_path / "r.html", grid=1, caption_sample=6).read_text(encoding="utf-8")
    assert (
        "alphanumeric_filter over 6 of 12 ingested captions, evenly spaced in shard order (a deterministic "
        "sample); thresholds drawn as red lines where they fall on the axis</figcaption>"
    ) in html
    assert (
        "<tr><td>word_repetition_filter</td><td>Share of word n-grams that occur more than once</td>"
        '<td class="n">0.0000 … 1.0000</td>\n    <td class="n">min_ratio 0</td><td class="n">0</td>\n    '
        '<td class="n">max_ratio 0.0308575</td><td class="n">1</td>\n    <td class="n">5 of 6</td></tr>'
    ) in html
    with pytest.raises(UserError, match="caption sample >= 1"):
        build_report(run, out=tmp_path / "r.html", caption_sample=0)


def test_no_rule_filters(tmp_path):
    part = tmp_path / "part"
    config = make_ingested_run(part)
    pipeline.save_run_config(part, config.updated("curate", recipe="none"))
    assert collect(part)["captions"] == {
        "total": 12,
        "sampled": 12,
        "recipe": "none",
        "kept_by_all": 12,
        "filters": [],
    }
    html = build_report(part, out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert (
        "No rule filters are configured (curate.recipe none), so no caption statistics are computed." in html
    )


def test_threshold_axis():
    # The axis takes in the values and every threshold but sys.maxsize ("no limit").
    assert threshold_axis(np.array([0.25, 0.75]), [0.5, float(sys.maxsize)]) == (0.25, 0.75, [0.5])
    assert threshold_axis(np.array([0.75, 0.25]), [0.0, 2.0]) == (0.0, 2.0, [0.0, 2.0])
    assert threshold_axis(np.array([0.0, 0.0]), [0.0, 0.0]) == (-0.5, 0.5, [0.0])
    assert threshold_axis(np.zeros(0), [1, sys.maxsize]) == (0.5, 1.5, [1.0])


def test_long_ids_wrap_inside_their_card(report):
    html = report.read_text(encoding="utf-8")
    assert ".key { overflow-wrap: anywhere; word-break: break-all; }" in html
    assert re.search(f'<div class="note key">{LONG_ID}-[01]</div>', html)


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
    assert plots == [f"quality_assets/stat_{n}.png" for n in FILTERS] + [
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
