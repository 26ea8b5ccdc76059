"""The synthetic-vs-real gap: `report --reference` and `score-dataset --reference` give exactly gap.cmmd and
gap.prdc of the stored embeddings and of the reference's `ClipScorer.embed` embeddings."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from PIL import Image
from typer.testing import CliRunner

from synthvlm import pipeline
from synthvlm.cli.report import register
from synthvlm.core import fsio, layout
from synthvlm.core.errors import UserError
from synthvlm.core.webdataset import encode
from synthvlm.report import gap
from synthvlm.report.build import assets_dir, build_report, collect, gap_json
from synthvlm.report.reference import MAX_ROWS, SAMPLE_SEED, EmbeddingSet, gap_metrics, sample_rows
from synthvlm.report.score_dataset import iter_pairs, score_dataset
from synthvlm.score.clip import scorer_for
from tests.report.helpers import CANDIDATES, CAPTIONS, image, make_run

SELECTED = 8  # more than PRDC's k = 5, so every metric is defined
COCO_MINI = Path("/work/shared/data/coco-mini")
REFERENCE_IMAGES = 8  # the last one's file is missing: one annotation not embedded
REFERENCE_CAPTIONS = 10  # images 0 and 1 have two captions each


def make_selected_run(run: Path) -> Path:
    """The report tests' run (10 captions x 2 candidates, 19 scored) with its top 8 selected."""
    make_run(run)
    config = pipeline.load_run_config(run).updated("select", top_k=SELECTED)
    pipeline.run(run, config, stages=["select"], recompute_from="select", progress=False)
    return run


def make_reference(folder: Path) -> tuple[Path, Path]:
    """A tiny COCO-format reference: 8 images (one file missing), 10 captions; returns (JSON, images)."""
    images = folder / "images"
    images.mkdir(parents=True)
    for i in range(REFERENCE_IMAGES - 1):
        (images / f"{i}.jpg").write_bytes(encode(image(100 + i), fmt="jpg", quality=95))
    doc = {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(REFERENCE_IMAGES)],
        "annotations": [
            {"id": 50 + j, "image_id": j % REFERENCE_IMAGES, "caption": f"a real photo, number {j}"}
            for j in range(REFERENCE_CAPTIONS)
        ],
    }
    (folder / "captions.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder / "captions.json", images


def _unit(rows: list[list[float]]) -> np.ndarray:
    a = np.array(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _stored_selected(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """The selected rows' stored (float16) image and text embeddings, in rank order, as unit float64."""
    stored = pq.read_table(run / "score" / "embeddings").to_pylist()
    by_key = {row["key"]: row for row in stored}
    keys = pq.read_table(run / "select" / "data", columns=["key"]).column("key").to_pylist()
    return _unit([by_key[k]["image_emb"] for k in keys]), _unit([by_key[k]["text_emb"] for k in keys])


def _embedded(scorer: Any, pairs: list[tuple[str, bytes, str]]) -> tuple[np.ndarray, np.ndarray]:
    """`ClipScorer.embed` of (image name, bytes, caption) pairs: one image row per distinct name, one text
    row per caption."""
    images = [Image.open(io.BytesIO(data)).convert("RGB") for _, data, _ in pairs]
    _, image_emb, text_emb = scorer.embed(images, [c for _, _, c in pairs])
    first = {}
    for i, (name, _, _) in enumerate(pairs):
        first.setdefault(name, i)
    return image_emb[sorted(first.values())], text_emb


def _expected(real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]) -> dict:
    out = {}
    for side, r, f in zip(("image", "text"), real, fake, strict=True):
        out[side] = {"cmmd": gap.cmmd(r, f, sigma=10.0, scale=1000.0), **gap.prdc(r, f, k=5)}
    return out


def _values(row: dict) -> dict:
    return {k: row[k] for k in ("cmmd", "precision", "recall", "density", "coverage")}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_selected_run(tmp_path_factory.mktemp("gap") / "run")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_reference(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def scorer(run: Path) -> Any:
    """The run's own CLIP scorer (its score config), as the report builds it."""
    return scorer_for(pipeline.load_run_config(run).score, models_dir=layout.models_dir(run))


@pytest.fixture(scope="module")
def report(run: Path, reference: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    coco, images = reference
    out = tmp_path_factory.mktemp("site") / "quality.html"
    return build_report(run, out=out, reference=coco, reference_images=images, grid=2, thumb_size=32)


def _reference_pairs(coco: Path, images: Path) -> list[tuple[str, bytes, str]]:
    """The reference's usable pairs in annotation order, read straight from its JSON and folder."""
    doc = json.loads(coco.read_text(encoding="utf-8"))
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    pairs = []
    for ann in doc["annotations"]:
        file = images / files[ann["image_id"]]
        if file.is_file():
            pairs.append((file.name, file.read_bytes(), ann["caption"]))
    return pairs


def test_report_gap_equals_the_metrics_of_the_stored_embeddings(run, reference, scorer, report):
    result = fsio.read_json(gap_json(report))
    assert gap_json(report) == report.with_name("gap.json")
    real = _embedded(scorer, _reference_pairs(*reference))
    expected = _expected(real, _stored_selected(run))
    assert {side: _values(result[side]) for side in ("image", "text")} == expected
    counts = {side: (result[side]["n_reference"], result[side]["n_selected"]) for side in ("image", "text")}
    assert counts == {"image": (7, SELECTED), "text": (9, SELECTED)}
    # 19 scored candidates, 8 selected; of the 10 captions, 2 have no candidate selected.
    assert result["not_selected"] == {"images": CAPTIONS * CANDIDATES - 1 - SELECTED, "captions": 2}
    assert result["reference"] == {
        "source": str(reference[0].resolve()),
        "format": "coco",
        "pairs": REFERENCE_CAPTIONS,
        "scored": 9,
        "failed": {"missing_image": 1},
        "images": 7,
    }
    assert (result["sigma"], result["scale"], result["k"]) == (10.0, 1000.0, 5)
    assert result["score"]["clip_model"] == "builtin:tiny-clip" and result["run"] == str(run.resolve())

    html = report.read_text(encoding="utf-8")
    assert '<h2 id="gap">Synthetic vs real gap</h2>' in html and 'id="gap-table"' in html
    for side in ("image", "text"):
        n_ref = result[side]["n_reference"]
        cells = [f'<td class="n">{n_ref}</td><td class="n">{SELECTED}</td>']
        cells += [f'<td class="n">{result[side][k]:.4f}</td>' for k in _values(expected[side])]
        row = html.split(f'<tr class="gap-{side}">', 1)[1].split("</tr>", 1)[0]
        assert all(c in " ".join(row.split()).replace("> <", "><") for c in cells), row
    assert 'docs/metrics.md, "Gap to a reference set"' in html
    # Sets this small are never sampled; the sentence saying so reaches gap.json and the page.
    device = gap.resolve_device("auto")
    assert result["sampling"] == {
        "device": device,
        "max_rows": MAX_ROWS if device == "numpy" else None,
        "seed": SAMPLE_SEED,
        "rows": {
            "image": {"reference": 7, "selected": SELECTED},
            "text": {"reference": 9, "selected": SELECTED},
        },
        "note": result["sampling"]["note"],
    }
    assert result["sampling"]["note"].startswith("Every row of both sets was used")
    assert f'<p class="note" id="gap-sampling">{result["sampling"]["note"]}</p>' in html
    for side in ("image", "text"):
        png = assets_dir(report) / f"gap_map_{side}.png"
        assert f'src="quality_assets/gap_map_{side}.png"' in html
        with Image.open(png) as im:
            assert im.size == (500, 320)


def test_report_gap_is_deterministic(run, reference, report, tmp_path):
    coco, images = reference
    again = build_report(
        run, out=tmp_path / "quality.html", reference=coco, reference_images=images, grid=2, thumb_size=32
    )
    assert gap_json(again).read_bytes() == gap_json(report).read_bytes()
    for side in ("image", "text"):
        name = f"gap_map_{side}.png"
        assert (assets_dir(again) / name).read_bytes() == (assets_dir(report) / name).read_bytes()


def test_without_a_reference_the_section_says_how(run, tmp_path):
    out = build_report(run, out=tmp_path / "r.html", grid=1)
    note = (
        f"No reference set: `synthvlm report {run.resolve()} --reference DATASET` measures the gap between "
        "the selected set and a real dataset (docs/report.md)."
    )
    html = out.read_text(encoding="utf-8")
    assert f'<p class="note" id="gap-note">{note}</p>' in html and 'id="gap-table"' not in html
    assert not gap_json(out).exists() and not list(assets_dir(out).glob("gap_map_*"))


def test_a_run_without_embeddings_says_so(run, reference, tmp_path):
    coco, images = reference
    app = typer.Typer()
    register(app)
    old = tmp_path / "old"
    shutil.copytree(run, old)
    shutil.rmtree(old / "score" / "embeddings")  # a run scored before embeddings were kept
    off = tmp_path / "off"
    shutil.copytree(old, off)
    config = yaml.safe_load((off / "config.yaml").read_text(encoding="utf-8"))
    config["score"]["embeddings"] = False
    (off / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    whys = {
        old: "it was scored before they were kept; rerun scoring with",
        off: "its config has `score.embeddings: false`; set it to true and rerun scoring with",
    }
    for folder, why in whys.items():
        where = folder.resolve()
        note = (
            "This run has no stored CLIP embeddings, so it cannot be compared with a reference set: "
            f"{why} `synthvlm score --run {where} --from score`, then `synthvlm select --run {where}`."
        )
        html = build_report(folder, out=folder / "report.html", grid=1).read_text(encoding="utf-8")
        assert f'<p class="note" id="gap-note">{note}</p>' in html and 'id="gap-table"' not in html
        with pytest.raises(UserError) as caught:
            build_report(folder, out=folder / "r.html", reference=coco, reference_images=images)
        assert str(caught.value) == note
        args = ["report", str(folder), "--out", str(folder / "cli.html"), "--reference", str(coco), "-q"]
        result = CliRunner().invoke(app, [*args, "--reference-images", str(images)])
        assert isinstance(result.exception, UserError) and str(result.exception) == note
        assert not (folder / "gap.json").exists()


def test_unfinished_selection_refuses_a_reference(run, reference, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(run, part)
    shutil.rmtree(part / "select")
    waiting = f"select has not run: run `synthvlm select --run {part.resolve()}`"
    assert collect(part)["gap"]["waiting"] == waiting
    with pytest.raises(UserError, match=r"^--reference needs the run's selection: select has not run"):
        collect(part, reference=reference[0], reference_images=reference[1])


def test_report_cli_prints_the_gap(run, reference, report, tmp_path):
    app = typer.Typer()
    register(app)
    coco, images = reference
    out = tmp_path / "cli.html"
    args = [
        "report",
        str(run),
        "--out",
        str(out),
        "--reference",
        str(coco),
        "--reference-images",
        str(images),
    ]
    result = CliRunner().invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert gap_json(out).read_bytes() == gap_json(report).read_bytes()
    lines = result.output.splitlines()
    assert lines[0] == f"report: {out}" and lines[2] == f"gap: {gap_json(out)}"
    g = fsio.read_json(gap_json(out))
    assert lines[1].startswith(f"gap to {coco.resolve()}: image (8 vs 7) CMMD {g['image']['cmmd']:.4f}, ")


def test_prdc_is_left_out_below_k_points():
    rng = np.random.default_rng(0)
    small = _unit(rng.standard_normal((4, 16)).tolist())
    big = _unit(rng.standard_normal((9, 16)).tolist())
    result = gap_metrics(EmbeddingSet(big, big), EmbeddingSet(small, big), name="selected")
    assert result["image"] == {
        "n_reference": 9,
        "n_selected": 4,
        "cmmd": gap.cmmd(big, small),
        "precision": None,
        "recall": None,
        "density": None,
        "coverage": None,
    }
    assert result["text"] == {
        "n_reference": 9,
        "n_selected": 9,
        "cmmd": gap.cmmd(big, big),
        **gap.prdc(big, big),
    }
    with pytest.raises(UserError, match="the selected set is empty"):
        gap_metrics(EmbeddingSet(big, big), EmbeddingSet(big[:0], big), name="selected")


def test_sets_above_max_rows_are_sampled():
    """On the CPU a set above max_rows is replaced by a seeded sample of its rows; in torch every row is
    used. The metrics are those of the rows kept, and the sampling record says which sets were sampled."""
    rng = np.random.default_rng(1)
    reference = EmbeddingSet(
        _unit(rng.standard_normal((40, 16)).tolist()), _unit(rng.standard_normal((12, 16)).tolist())
    )
    selected = EmbeddingSet(
        _unit(rng.standard_normal((25, 16)).tolist()), _unit(rng.standard_normal((35, 16)).tolist())
    )
    result = gap_metrics(reference, selected, name="selected", device="numpy", max_rows=30, seed=3)
    keep_40, keep_35 = sample_rows(40, limit=30, seed=3), sample_rows(35, limit=30, seed=3)
    for keep, n in ((keep_40, 40), (keep_35, 35)):
        assert len(keep) == 30 and (np.diff(keep) > 0).all() and 0 <= keep[0] and keep[-1] < n
    assert sample_rows(30, limit=30, seed=3) is None
    assert not np.array_equal(sample_rows(40, limit=30, seed=4), keep_40)
    pairs = {
        "image": (reference.image[keep_40], selected.image),
        "text": (reference.text, selected.text[keep_35]),
    }
    for side, (real, fake) in pairs.items():
        expected = {
            "n_reference": len(real),
            "n_selected": len(fake),
            "cmmd": gap.cmmd(real, fake, device="numpy"),
        }
        assert result[side] == {**expected, **gap.prdc(real, fake, k=5, device="numpy")}
    assert (result["image"]["n_reference"], result["text"]["n_selected"]) == (30, 30)
    assert result["sampling"] == {
        "device": "numpy",
        "max_rows": 30,
        "seed": 3,
        "rows": {"image": {"reference": 40, "selected": 25}, "text": {"reference": 12, "selected": 35}},
        "note": "On the CPU a set larger than 30 rows is sampled to 30 rows without replacement (numpy "
        "default_rng, seed 3): here the image reference (40 rows), the text selected (35 rows); the counts "
        "are of the rows used.",
    }
    assert gap_metrics(reference, selected, name="selected", device="numpy", max_rows=30, seed=3) == result
    # The torch path (here on torch's CPU kernels) takes every row.
    whole = gap_metrics(reference, selected, name="selected", device="cpu", max_rows=30, seed=3)
    assert (whole["image"]["n_reference"], whole["text"]["n_selected"]) == (40, 35)
    assert whole["sampling"]["max_rows"] is None
    assert whole["sampling"]["note"] == (
        "Every row of both sets was used: the metrics ran in torch on cpu, where no set is sampled."
    )


def test_score_dataset_reference(run, reference, tmp_path):
    """score-dataset of the run's selected set against the reference: the summary's gap is that of its
    embeddings.parquet and the reference's embeddings."""
    coco, images = reference
    score = pipeline.load_run_config(run).score
    out = tmp_path / "scored"
    summary = score_dataset(run, out=out, score=score, reference=coco, reference_images=images)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == summary
    scores = pq.read_table(out / "scores.parquet").to_pylist()
    stored = pq.read_table(out / "embeddings.parquet")
    assert stored.schema.equals(pq.read_schema(next((run / "score" / "embeddings").glob("part-*.parquet"))))
    rows = stored.to_pylist()
    assert [r["key"] for r in rows] == [r["id"] for r in scores if r["status"] == "ok"]
    assert len(rows) == SELECTED
    scorer = scorer_for(score, models_dir=out / "models")
    fake = (_unit([r["image_emb"] for r in rows]), _unit([r["text_emb"] for r in rows]))
    # What was stored is the float16 of what the scorer gives (8 pairs: one batch, as scoring had).
    ims = [Image.open(io.BytesIO(p.data)).convert("RGB") for p in iter_pairs(run, fmt="run")]
    _, image_emb, text_emb = scorer.embed(ims, [r["caption"] for r in scores])
    assert np.array([r["image_emb"] for r in rows]).tolist() == image_emb.astype(np.float16).tolist()
    assert np.array([r["text_emb"] for r in rows]).tolist() == text_emb.astype(np.float16).tolist()
    expected = _expected(_embedded(scorer, _reference_pairs(coco, images)), fake)
    gap_row = summary["reference"]
    assert {side: _values(gap_row[side]) for side in ("image", "text")} == expected
    counts = {side: (gap_row[side]["n_reference"], gap_row[side]["n_dataset"]) for side in ("image", "text")}
    assert counts == {"image": (7, SELECTED), "text": (9, SELECTED)}
    assert (gap_row["pairs"], gap_row["scored"], gap_row["failed"], gap_row["images"]) == (
        10,
        9,
        {"missing_image": 1},
        7,
    )

    app = typer.Typer()
    register(app)
    args = ["score-dataset", str(run), "--out", str(tmp_path / "cli"), "--like", str(run), "--reference"]
    result = CliRunner().invoke(app, [*args, str(coco), "--reference-images", str(images), "-q"])
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[1]
    assert line.startswith(f"gap to {coco.resolve()}: image (8 vs 7) CMMD {gap_row['image']['cmmd']:.4f}, ")
    assert "; text (8 vs 9) CMMD" in line
    # A reference given wrongly is refused before anything is scored.
    with pytest.raises(UserError, match=f"^reference: {coco}: a coco file .* with --reference-images$"):
        score_dataset(run, out=tmp_path / "bad", score=score, reference=coco)
    assert not (tmp_path / "bad" / "scores.parquet").exists()


@pytest.mark.skipif(not COCO_MINI.is_dir(), reason=f"{COCO_MINI} is not present")
def test_coco_mini_reference(run, scorer, tmp_path):
    coco, images = COCO_MINI / "captions_val2017.json", COCO_MINI / "val2017"
    out = build_report(run, out=tmp_path / "coco.html", reference=coco, reference_images=images, grid=1)
    result = fsio.read_json(gap_json(out))
    pairs = [(p.image, p.data, p.caption) for p in iter_pairs(coco, fmt="coco", images=images)]
    assert all(p[1] is not None for p in pairs)
    expected = _expected(_embedded(scorer, pairs), _stored_selected(run))
    assert {side: _values(result[side]) for side in ("image", "text")} == expected
    counts = {side: (result[side]["n_reference"], result[side]["n_selected"]) for side in ("image", "text")}
    assert counts == {"image": (79, SELECTED), "text": (395, SELECTED)}
    assert (result["reference"]["pairs"], result["reference"]["scored"], result["reference"]["failed"]) == (
        395,
        395,
        {},
    )
