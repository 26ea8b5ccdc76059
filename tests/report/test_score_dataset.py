"""`score-dataset`: every source format, failure reasons, scores equal to the pipeline's metric functions."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from synthvlm import pipeline
from synthvlm.cli.report import register
from synthvlm.config import ScoreConfig
from synthvlm.core import fsio, schema
from synthvlm.core.errors import UserError
from synthvlm.core.webdataset import add_member, encode
from synthvlm.models.builtin.clip import build_tiny_clip
from synthvlm.report.build import build_report, collect, dataset_rows
from synthvlm.report.score_dataset import detect_source, score_dataset
from synthvlm.score.clip import ClipScorer, clip_score
from synthvlm.score.ssim import DEFINITIONS, paper_ssim
from tests.report.helpers import image, make_run

TINY = ScoreConfig(clip_model="builtin:tiny-clip", device="cpu", ssim_size=128, ssim_low=56, batch_size=4)
PAPER = ScoreConfig.model_validate({**TINY.model_dump(), "ssim_data_range": 2})  # SSIM as the paper's numbers
CAPTIONS = ["a red square on a table", "two cats asleep", "a bowl of fruit"]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> ClipScorer:
    """The CLIP scorer the score stage would build for `TINY` (same tiny weights wherever they are built)."""
    path = build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")
    return ClipScorer(str(path), device="cpu", prefix=TINY.prefix, batch_size=TINY.batch_size)


def _jpeg(i: int) -> bytes:
    return encode(image(i), fmt="jpg", quality=95)


def _expected(
    scorer: ClipScorer, pairs: list[tuple[bytes, str]], score: ScoreConfig = TINY
) -> list[tuple[float, float, float]]:
    """Scores straight from the pipeline's metric functions, one pair at a time."""
    out = []
    for data, text in pairs:
        im = Image.open(io.BytesIO(data)).convert("RGB")
        c = float(clip_score(scorer.cosines([im], [text]))[0])
        s = paper_ssim(im, size=score.ssim_size, low=score.ssim_low, data_range=score.ssim_data_range)
        out.append((c, s, c + score.ssim_weight * s))
    return out


def _scores(out: Path) -> list[dict]:
    return pq.read_table(out / "scores.parquet").to_pylist()


def test_all_formats_give_the_pipeline_scores(tmp_path, scorer):
    good = [(_jpeg(i), CAPTIONS[i]) for i in range(3)]
    expected = _expected(scorer, good)
    # The same three pairs in four layouts.
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (data, _) in enumerate(good):
        (folder / f"{i}.jpg").write_bytes(data)
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(3)],
        "annotations": [{"id": 10 + i, "image_id": i, "caption": c} for i, c in enumerate(CAPTIONS)],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    llava = [
        {
            "id": f"s{i}",
            "image": f"{i}.jpg",
            "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": c}],
        }
        for i, c in enumerate(CAPTIONS)
    ]
    (tmp_path / "llava.json").write_text(json.dumps(llava))
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for i, (data, text) in enumerate(good):
            add_member(tar, f"s{i}.jpg", data)
            add_member(tar, f"s{i}.txt", text.encode())
    rows = [
        {"key": f"s{i}", "caption": t, "image": {"bytes": d, "path": f"{i}.jpg"}}
        for i, (d, t) in enumerate(good)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")

    for source, fmt in [
        ("coco.json", "coco"),
        ("llava.json", "llava"),
        ("shard.tar", "webdataset"),
        ("data.parquet", "parquet"),
    ]:
        assert detect_source(tmp_path / source) == fmt
        summary = score_dataset(tmp_path / source, out=tmp_path / fmt, images=folder, score=TINY)
        got = _scores(tmp_path / fmt)
        assert [r["status"] for r in got] == ["ok"] * 3 and [r["caption"] for r in got] == CAPTIONS, fmt
        assert [(r["width"], r["height"]) for r in got] == [(64, 64)] * 3
        for r, (c, s, w) in zip(got, expected, strict=True):
            assert r["ssim"] == s, fmt  # same function, same pixels: bit-identical
            assert abs(r["clip"] - c) < 1e-6 and abs(r["weighted"] - w) < 1e-6, (
                fmt
            )  # batch padding moves < 1e-6
        assert summary["pairs"] == 3 and summary["scored"] == 3 and summary["failed"] == {}
        assert summary["ssim_mean"] == pytest.approx(np.mean([e[1] for e in expected]), abs=1e-15)
        assert json.loads((tmp_path / fmt / "summary.json").read_text()) == summary
    assert [r["id"] for r in _scores(tmp_path / "coco")] == ["10", "11", "12"]
    assert [r["id"] for r in _scores(tmp_path / "webdataset")] == ["s0", "s1", "s2"]


def test_missing_and_broken_images_are_recorded(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(_jpeg(1))
    (folder / "broken.jpg").write_bytes(_jpeg(2)[:200])  # truncated JPEG
    (folder / "text.jpg").write_bytes(b"not an image at all")
    coco = {
        "images": [
            {"id": i, "file_name": n}
            for i, n in enumerate(["good.jpg", "broken.jpg", "text.jpg", "gone.jpg"])
        ],
        "annotations": [
            {"id": 1, "image_id": 0, "caption": "fine"},
            {"id": 2, "image_id": 1, "caption": "cut"},
            {"id": 3, "image_id": 2, "caption": "text"},
            {"id": 4, "image_id": 3, "caption": "gone"},
            {"id": 5, "image_id": 99, "caption": "unknown image id"},
            {"id": 6, "image_id": 0, "caption": "   "},
            {"id": 7, "image_id": 0, "caption": "again"},
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    summary = score_dataset(tmp_path / "c.json", out=tmp_path / "out", images=folder, score=TINY)
    rows = _scores(tmp_path / "out")
    assert [(r["index"], r["status"]) for r in rows] == [
        (1, "ok"),
        (2, "unreadable_image"),
        (3, "unreadable_image"),
        (4, "missing_image"),
        (5, "missing_image"),
        (6, "empty_caption"),
        (7, "ok"),
    ]
    assert (
        rows[3]["detail"] == f"no file gone.jpg in {folder}" and rows[4]["detail"] == "record names no image"
    )
    assert "cannot identify image file" in rows[2]["detail"]
    assert all(r["clip"] is None for r in rows if r["status"] != "ok")
    assert rows[0]["ssim"] == rows[6]["ssim"]  # one image, two captions: SSIM is per image
    assert summary["failed"] == {"empty_caption": 1, "missing_image": 2, "unreadable_image": 2}
    assert (summary["pairs"], summary["scored"], summary["images"]) == (7, 2, 1)


def test_webdataset_and_parquet_failures(tmp_path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        add_member(tar, "k1.jpg", _jpeg(0))
        add_member(tar, "k1.txt", b"ok caption")
        add_member(tar, "k2.txt", b"no image here")
        add_member(tar, "k3.png", _jpeg(1))
        add_member(tar, "k4.webp", _jpeg(2))
        add_member(tar, "k4.json", json.dumps({"caption": "from json"}).encode())
    score_dataset(tmp_path / "a.tar", out=tmp_path / "w", score=TINY)
    assert [(r["id"], r["status"], r["caption"]) for r in _scores(tmp_path / "w")] == [
        ("k1", "ok", "ok caption"),
        ("k2", "missing_image", "no image here"),
        ("k3", "missing_field", None),
        ("k4", "ok", "from json"),
    ]
    pq.write_table(
        pa.table({"text": ["x", None, "z"], "image": [_jpeg(0), _jpeg(1), None]}), tmp_path / "p.parquet"
    )
    summary = score_dataset(tmp_path / "p.parquet", out=tmp_path / "p", score=TINY)
    assert [r["status"] for r in _scores(tmp_path / "p")] == ["ok", "missing_field", "missing_image"]
    assert summary["failed"] == {"missing_field": 1, "missing_image": 1}


def test_ssim_is_shared_only_by_equal_image_bytes(tmp_path):
    """Hugging Face Parquet often repeats one `path` for different images: SSIM must follow the bytes."""
    images = [{"bytes": _jpeg(i), "path": "image.jpg"} for i in (0, 3, 0)]
    pq.write_table(pa.table({"caption": ["a", "b", "c"], "image": images}), tmp_path / "p.parquet")
    score_dataset(tmp_path / "p.parquet", out=tmp_path / "p", score=TINY)
    ssim = [r["ssim"] for r in _scores(tmp_path / "p")]
    expected = [paper_ssim(Image.open(io.BytesIO(_jpeg(i))).convert("RGB"), size=128, low=56) for i in (0, 3)]
    assert ssim == [expected[0], expected[1], expected[0]] and expected[0] != expected[1]


def test_a_run_rescored_gives_its_stored_scores(tmp_path):
    run = make_run(tmp_path / "run")
    config = pipeline.load_run_config(run)
    assert detect_source(run) == "run"
    summary = score_dataset(run, out=tmp_path / "rescored", score=config.score)
    stored = pq.read_table(run / "select" / "data").to_pylist()
    got = _scores(tmp_path / "rescored")
    assert [r["id"] for r in got] == [r["key"] for r in stored] and summary["scored"] == len(stored) == 4
    for r, s in zip(got, stored, strict=True):
        assert r["ssim"] == s["ssim"] and abs(r["clip"] - s["clip"]) < 1e-6


def test_ssim_data_range_is_in_the_score_fingerprint_only_when_not_255(tmp_path):
    """At 255 the fingerprint is the one runs made before the setting had; 2 needs --from score."""
    run = make_run(tmp_path / "run")
    settings = fsio.read_json(run / "score" / "fingerprint.json")["settings"]
    assert sorted(settings) == [
        "batch_size", "clip_model", "clip_revision", "prefix", "ssim_low", "ssim_size", "ssim_weight"
    ]  # fmt: skip
    config = pipeline.load_run_config(run)
    before = pq.read_table(run / "score" / "data").to_pylist()
    paper = config.updated("score", ssim_data_range=2)
    with pytest.raises(UserError, match=r"changed: score\.ssim_data_range\); rerun with --from score"):
        pipeline.run(run, paper, stages=["score"], progress=False)
    pipeline.run(run, paper, stages=["score", "select"], recompute_from="score", progress=False)
    recorded = fsio.read_json(run / "score" / "fingerprint.json")["settings"]
    assert recorded == {**settings, "ssim_data_range": 2}
    after = pq.read_table(run / "score" / "data").to_pylist()
    assert [r["key"] for r in after] == [r["key"] for r in before]
    assert all(a["ssim"] < b["ssim"] for a, b in zip(after, before, strict=True))
    # Rescored with the run's settings, data range 2 included: the stored scores again.
    summary = score_dataset(run, out=tmp_path / "rescored", score=pipeline.load_run_config(run).score)
    assert summary["score"]["ssim_data_range"] == 2 and summary["ssim_definition"] == DEFINITIONS[2]
    stored = {r["key"]: r["ssim"] for r in pq.read_table(run / "select" / "data").to_pylist()}
    assert {r["id"]: r["ssim"] for r in _scores(tmp_path / "rescored")} == stored


def test_report_table4_names_the_ssim_definitions(tmp_path):
    """Each Table-4 row says its data range; an older summary without the field counts as 255."""
    run = make_run(tmp_path / "run")
    score_dataset(run, out=tmp_path / "r255", score=TINY)
    summary = score_dataset(run, out=tmp_path / "r2", score=PAPER)
    old = tmp_path / "old" / "summary.json"
    del summary["score"]["ssim_data_range"], summary["ssim_definition"]
    fsio.write_json(old, {**summary, "ssim_mean": 0.5})
    rows = dataset_rows([tmp_path / "r255", tmp_path / "r2", old], collect(run)["score"])
    assert [(r["score"]["ssim_data_range"], r["ssim_definition"]) for r in rows] == [
        (255, DEFINITIONS[255]), (2, DEFINITIONS[2]), (255, DEFINITIONS[255])
    ]  # fmt: skip
    assert [r["differs"] for r in rows] == [[], ["ssim_data_range"], []]
    html = build_report(run, out=tmp_path / "r.html", datasets=[tmp_path / "r2"], grid=1).read_text("utf-8")
    runs = re.findall(r'<tr class="table4-run">.*?</tr>', html, re.S)
    assert len(runs) == 2 and all("builtin:tiny-clip; SSIM data_range 255</td>" in r for r in runs)
    (row,) = re.findall(r'<tr class="table4-dataset">.*?</tr>', html, re.S)
    assert 'tiny-clip; SSIM data_range 2 <span class="warn">not comparable: ssim_data_range differ' in row
    assert "in grayscale,\nexact SSIM of the uint8 grayscale images (data_range 255);" in html


def test_bad_sources_are_user_errors(tmp_path):
    (tmp_path / "list.json").write_text('[{"caption": "x"}]')
    with pytest.raises(UserError, match="neither COCO captions nor LLaVA"):
        detect_source(tmp_path / "list.json")
    with pytest.raises(UserError, match="no such file"):
        detect_source(tmp_path / "missing.tar")
    (tmp_path / "c.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(UserError, match="pass the image folder with --images"):
        score_dataset(tmp_path / "c.json", out=tmp_path / "o", score=TINY)


def test_cli_takes_a_runs_metric_settings(tmp_path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        add_member(tar, "k1.jpg", _jpeg(0))
        add_member(tar, "k1.txt", b"ok caption")
    app = typer.Typer()
    register(app)
    (tmp_path / "run").mkdir()
    pipeline.save_run_config(
        tmp_path / "run", pipeline.RunConfig.model_validate({"score": PAPER.model_dump()})
    )
    args = ["score-dataset", str(tmp_path / "a.tar"), "--like", str(tmp_path / "run"), "--name", "mine", "-q"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("mine: 1 of 1 pairs scored (not scored: none); mean CLIP ")
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["score"]["ssim_size"] == 128 and summary["score"]["clip_model"] == "builtin:tiny-clip"
    # --like carries the data range; --ssim-data-range overrides it.
    assert summary["score"]["ssim_data_range"] == 2 and summary["ssim_definition"] == DEFINITIONS[2]
    im = Image.open(io.BytesIO(_jpeg(0))).convert("RGB")
    assert summary["ssim_mean"] == paper_ssim(im, size=128, low=56, data_range=2)
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o2"), "--ssim-data-range", "255"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["score"]["ssim_data_range"] == 255
    assert summary["ssim_mean"] == paper_ssim(im, size=128, low=56)
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o3"), "--ssim-data-range", "1"])
    assert result.exit_code != 0 and not (tmp_path / "o3").exists()
    assert "score.ssim_data_range: Input should be 255 or 2" in str(result.exception)


def test_coco_mini(shared_data, tmp_path, scorer):
    """Real COCO photos: every annotation scored, and two pairs equal the pipeline's own functions."""
    coco = shared_data / "coco-mini"
    score = ScoreConfig(clip_model="builtin:tiny-clip", device="cpu", batch_size=64)  # paper sizes: 768 / 336
    summary = score_dataset(
        coco / "captions_val2017.json", out=tmp_path / "coco", images=coco / "val2017", score=score
    )
    assert (summary["pairs"], summary["scored"], summary["images"], summary["failed"]) == (395, 395, 79, {})
    rows = _scores(tmp_path / "coco")
    assert len(rows) == 395 and len({r["image"] for r in rows}) == 79
    annotations = json.loads((coco / "captions_val2017.json").read_text())["annotations"]
    assert [r["id"] for r in rows] == [str(a["id"]) for a in annotations]
    for r in (rows[0], rows[200]):
        data = (coco / "val2017" / r["image"]).read_bytes()
        ((c, s, w),) = _expected(scorer, [(data, r["caption"])], score)
        assert r["ssim"] == s and abs(r["clip"] - c) < 1e-6 and abs(r["weighted"] - w) < 1e-6
    assert 0.5 < summary["ssim_mean"] < 1.0 and summary["clip_mean"] == pytest.approx(
        np.mean([r["clip"] for r in rows])
    )
    assert round(summary["ssim_mean"], 4) == 0.8935  # the exact SSIM of the uint8 images (data_range 255)


def test_coco_mini_reproduces_the_papers_ssim(shared_data, tmp_path):
    """The paper's Table 4 gives SSIM 0.73 for COCO: data range 2 gives 0.7241 on coco-mini (255: 0.8935,
    test_coco_mini)."""
    coco = shared_data / "coco-mini"
    app = typer.Typer()
    register(app)
    out = tmp_path / "paper"
    result = CliRunner().invoke(
        app,
        [
            "score-dataset",
            str(coco / "captions_val2017.json"),
            "--images",
            str(coco / "val2017"),
            "--out",
            str(out),
            "--clip-model",
            "builtin:tiny-clip",
            "--device",
            "cpu",
            "--batch-size",
            "64",
            "--ssim-data-range",
            "2",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["pairs"], summary["scored"], summary["images"]) == (395, 395, 79)
    assert summary["score"]["ssim_data_range"] == 2 and summary["ssim_definition"] == DEFINITIONS[2]
    assert round(summary["ssim_mean"], 4) == 0.7241
    assert ", SSIM 0.7241, " in result.stdout


def test_opt_in_scorers_and_vendi_reach_the_scores_and_the_summary(tmp_path):
    """With a run's opt-in scorers (`--like`), every scored pair gets their columns, computed by the scorer
    classes the score stage uses; the summary holds each column's mean and the Vendi score of the distinct
    images (the same image twice counts once)."""
    from synthvlm.report.diversity import vendi_score
    from synthvlm.score.pairs import scorer_class

    scorers = {
        "nsfw": {"model": "builtin:tiny-safety-checker"},
        "aesthetic": {"clip_model": "builtin:tiny-clip", "weights": "builtin:tiny-aesthetic"},
    }
    score = ScoreConfig.model_validate({**TINY.model_dump(), "scorers": scorers})
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(_jpeg(i))
    coco = {  # image 0 has two captions
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(3)],
        "annotations": [
            {"id": 10 + i, "image_id": i % 3, "caption": c} for i, c in enumerate([*CAPTIONS, "a red square"])
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    summary = score_dataset(tmp_path / "coco.json", out=tmp_path / "out", images=folder, score=score)
    rows = _scores(tmp_path / "out")
    assert [r["image"] for r in rows] == ["0.jpg", "1.jpg", "2.jpg", "0.jpg"]
    assert list(rows[0])[-3:] == ["nsfw", "nsfw_margin", "aesthetic"]
    images = [Image.open(io.BytesIO(_jpeg(i % 3))).convert("RGB") for i in range(4)]
    captions = [r["caption"] for r in rows]
    for name in ("nsfw", "aesthetic"):
        config = getattr(score.scorers, name)
        own = scorer_class(name)(
            config, run_dir=tmp_path, models_dir=tmp_path / "m", device="cpu", batch_size=4, workers=1
        )
        for column, values in own.score(images, captions).items():
            assert [r[column] for r in rows] == values.tolist(), column
    assert summary["aesthetic_mean"] == pytest.approx(np.mean([r["aesthetic"] for r in rows]), abs=1e-12)
    assert summary["nsfw_margin_mean"] == pytest.approx(np.mean([r["nsfw_margin"] for r in rows]), abs=1e-12)
    assert "nsfw_mean" not in summary  # a flag, not a score
    embeddings = pq.read_table(tmp_path / "out" / "embeddings.parquet")
    vectors = schema.embedding_matrix(embeddings.column("image_emb"))
    assert summary["vendi"] == pytest.approx(vendi_score(vectors[:3]), rel=1e-12)  # 3 distinct images
