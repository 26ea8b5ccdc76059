"""`synthvlm demo` end to end: funnel accounting, determinism, kill/resume of model stages, exports."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthvlm.core.schema import EXPORT_PROVENANCE
from tests.conftest import Demo
from tests.pipeline.helpers import cli, done_count, kill_when, tmp_exists, tree_digest


@pytest.fixture(scope="module")
def ref(demo: Demo) -> Path:
    return demo.run


def test_the_demo_command_says_where_its_outputs_are(demo: Demo):
    assert f"export (llava): {demo.export / 'llava'}" in demo.result.stdout
    assert "torchvision" not in demo.result.stderr  # the PIL processors are chosen, not a fallback warned of


def test_funnel_accounts_for_every_row(ref):
    stages = json.loads(cli("status", str(ref), "--json").stdout)["stages"]
    assert list(stages) == ["ingest", "curate", "generate", "score", "select", "export"]
    for name, f in stages.items():
        assert f["in"] == f["kept"] + sum(f["dropped"].values()), name
        assert f["complete"] and f["tasks_done"] == f["tasks_total"]
    assert stages["ingest"]["in"] == 52 and stages["ingest"]["kept"] == 50
    assert stages["ingest"]["dropped"] == {"bad_json": 1, "empty_caption": 1}
    assert stages["curate"]["in"] == 50
    curated = stages["curate"]["kept"]
    assert stages["generate"]["in"] == 2 * curated  # two candidates per caption
    assert stages["score"]["in"] == stages["generate"]["kept"]
    assert stages["select"]["in"] == stages["score"]["kept"]
    assert stages["select"]["kept"] == 24
    assert stages["select"]["dropped"]["not_best_of_n"] == stages["score"]["kept"] - curated
    assert stages["export"] == {**stages["export"], "in": 24, "kept": 24, "dropped": {}}
    rejected = pq.read_table(ref / "curate" / "rejected").to_pylist()
    assert len(rejected) == sum(stages["curate"]["dropped"].values())
    assert all(r["stage"] == "curate" and r["reason"] for r in rejected)


def test_selection_is_best_of_n_then_top_k(ref):
    scores = pq.read_table(ref / "score" / "data").to_pylist()
    best: dict[str, dict] = {}
    for row in scores:
        cur = best.get(row["caption_id"])
        if cur is None or (row["weighted"], -row["candidate_index"]) > (
            cur["weighted"],
            -cur["candidate_index"],
        ):
            best[row["caption_id"]] = row
    expected = sorted(best.values(), key=lambda r: (-r["weighted"], r["caption_id"]))[:24]
    selection = pq.read_table(ref / "select" / "data").to_pylist()
    assert [r["key"] for r in selection] == [r["key"] for r in expected]
    assert [r["rank"] for r in selection] == list(range(1, 25))
    assert {r["cutoff"] for r in selection} == {expected[-1]["weighted"]}
    for row in scores:
        assert row["weighted"] == pytest.approx(row["clip"] + 0.5 * row["ssim"], abs=1e-12)
        assert 0.0 <= row["clip"] <= 1.0


def test_recipe_file_regenerates_the_same_pixels(ref, recipe_run):
    """configs/demo.yaml in a fresh run directory -> byte-identical images, metadata, scores, selection."""
    run = recipe_run
    skip = ("models/", "export/")  # the demo exports to D/export, this run to RUN/export
    assert tree_digest(run, skip=skip) == tree_digest(ref, skip=skip)
    assert tree_digest(
        run / "export", skip=("done/", "llava-parts/", "rejected/", "plan/", "phases.json")
    ) == tree_digest(ref.parent / "export")


@pytest.mark.parametrize(
    "ready",
    [
        lambda run: tmp_exists(run / "generate" / "images"),
        lambda run: done_count(run / "generate", "generate") >= 2,
        lambda run: done_count(run / "score", "score") >= 1,
        lambda run: done_count(run / "export", "webdataset") >= 1,
    ],
    ids=["mid-generate-shard", "generate-after-2-shards", "score-after-1-shard", "export-after-1-shard"],
)
@pytest.mark.fault
def test_kill_and_resume_gives_identical_outputs(demo: Demo, tmp_path, ready):
    out = tmp_path / "D"
    run = out / "run"
    kill_when(["demo", "--out", str(out), "-q"], lambda: ready(run))
    assert not (run / "export" / "complete.json").exists()
    result = cli("demo", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert tree_digest(out) == tree_digest(demo.out)


def test_exports_load_in_their_libraries(ref):
    import datasets
    import webdataset as wds

    export = ref.parent / "export"
    selection = pq.read_table(ref / "select" / "data").to_pylist()
    keys = [r["key"] for r in selection]

    raw = (export / "llava" / "synthvlm_pretrain.json").read_bytes()
    assert raw.isascii()  # LLaVA opens it with the locale's encoding
    llava = json.loads(raw)
    assert [e["id"] for e in llava] == keys
    # LLaVA's LazySupervisedDataset: one <image> per record, image path joined to --image_folder.
    assert all(e["conversations"][0]["value"].count("<image>") == 1 for e in llava)
    assert [e["conversations"][1]["value"] for e in llava] == [r["caption"] for r in selection]
    assert [e["image"] for e in llava] == [f"00000/{k}.jpg" for k in keys]
    folder = export / "llava" / "images"
    assert all(Image.open(os.path.join(folder, e["image"])).convert("RGB").size == (64, 64) for e in llava)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")) == sorted(
        e["image"] for e in llava
    )

    shards = sorted(str(p) for p in (export / "webdataset").glob("*.tar"))
    sizes = json.loads((export / "webdataset" / "sizes.json").read_text())
    assert sizes == {"shard-00000.tar": 10, "shard-00001.tar": 10, "shard-00002.tar": 4}  # open_clip reads it
    samples = list(
        wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt", "json")
    )
    assert [s[0] for s in samples] == keys
    assert all(s[1].size == (64, 64) for s in samples)
    assert [s[2] for s in samples] == [r["caption"] for r in selection]
    assert [s[3]["rank"] for s in samples] == list(range(1, 25))

    files = sorted(str(p) for p in (export / "parquet").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.num_rows == 24
    assert ds[0]["image"].size == (64, 64)
    assert ds["key"] == keys
    # every score column and each image's provenance travel with it
    made = {r["key"]: r for r in pq.read_table(ref / "generate" / "data").to_pylist()}
    assert ds.column_names[-8:] == [*("clip", "ssim", "weighted", "rank"), *EXPORT_PROVENANCE]
    assert ds["generator"] == ["tiny"] * 24 and ds["weighted"] == [r["weighted"] for r in selection]
    assert ds["seed"] == [made[k]["seed"] for k in keys]
    assert ds["model_revision"] == [made[k]["model_revision"] for k in keys]
    assert [s[3]["seed"] for s in samples] == ds["seed"]  # the WebDataset json carries them too

    result = cli("validate", str(export))  # the export folder: every format folder in it
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{export / fmt}: ok" for fmt in ("llava", "parquet", "webdataset")]


def test_validate_reports_deleted_and_corrupt_images(ref, tmp_path):
    llava = tmp_path / "llava"
    shutil.copytree(ref.parent / "export" / "llava", llava)
    images = sorted((llava / "images").rglob("*.jpg"))
    images[0].unlink()
    images[1].write_bytes(images[1].read_bytes()[:100])
    result = cli("validate", str(llava))
    assert result.returncode == 1
    assert f"image {images[0].name} does not exist" in result.stderr
    assert f"image {images[1].name} does not decode" in result.stderr

    wds_dir = tmp_path / "wds"
    shutil.copytree(ref.parent / "export" / "webdataset", wds_dir)
    first = sorted(wds_dir.glob("*.tar"))[0]
    with tarfile.open(first) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(first, "w") as tar:
        for m, data in members[4:]:  # drop the first sample and one file of the second
            tar.addfile(m, __import__("io").BytesIO(data))
    result = cli("validate", str(wds_dir))
    assert result.returncode == 1
    assert "23 records found, the selection has 24" in result.stderr
    assert "expected jpg, txt, json" in result.stderr
