"""Score stage: unreadable images become rejected rows; every other image scores as in a clean shard."""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest

from synthvlm import pipeline
from synthvlm.config import RunConfig


def _config(captions) -> RunConfig:
    return RunConfig.model_validate(
        {
            "ingest": {"inputs": [str(captions)]},
            "curate": {"recipe": "none", "dedup": False},
            "generate": {"preset": "tiny", "images_per_shard": 7, "batch_size": 7},
            "score": {"clip_model": "builtin:tiny-clip", "ssim_size": 64, "ssim_low": 28, "batch_size": 2},
        }
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    captions = root / "c.jsonl"
    words = ["red", "blue", "green", "small", "large", "old", "new"]
    captions.write_text(
        "".join(json.dumps({"id": f"c{i}", "caption": f"a {w} bus"}) + "\n" for i, w in enumerate(words))
    )
    run = root / "clean"
    pipeline.run(run, _config(captions), stages=["ingest", "curate", "generate", "score"], progress=False)
    return root, captions, run


def test_unreadable_images_are_rejected_with_their_reason(clean, tmp_path):
    root, captions, clean_run = clean
    run = tmp_path / "run"
    config = _config(captions)
    pipeline.run(run, config, stages=["ingest", "curate", "generate"], progress=False)
    tar = run / "generate" / "images" / "part-00000.tar"
    with tarfile.open(tar) as src:
        members = [(m, src.extractfile(m).read()) for m in src if m.isfile()]
    images = [m.name for m, _ in members if m.name.endswith(".jpg")]
    assert len(images) == 7
    missing, broken = images[1], images[4]
    with tarfile.open(tar, "w") as dst:
        for member, data in members:
            if member.name == missing:
                continue
            if member.name == broken:
                data = data[:100]  # a truncated JPEG
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))

    pipeline.run(run, config, stages=["score"], progress=False)
    rejected = pq.read_table(run / "score" / "rejected").to_pylist()
    assert [(r["id"], r["reason"]) for r in rejected] == [
        (missing.removesuffix(".jpg"), "unreadable_image"),
        (broken.removesuffix(".jpg"), "unreadable_image"),
    ]
    assert rejected[0]["detail"] == "image missing from its shard"
    assert rejected[1]["detail"] == "Truncated File Read"  # PIL's words
    funnel = pipeline.status(run)["stages"]["score"]
    assert (funnel["in"], funnel["kept"], funnel["dropped"]) == (7, 5, {"unreadable_image": 2})

    scored = {r["key"]: r for r in pq.read_table(run / "score" / "data").to_pylist()}
    reference = {r["key"]: r for r in pq.read_table(clean_run / "score" / "data").to_pylist()}
    assert sorted(scored) == sorted(set(reference) - {missing[:-4], broken[:-4]})
    for key, row in scored.items():  # SSIM per image is exact; CLIP batches differ, so 1e-6
        assert row["ssim"] == reference[key]["ssim"]
        assert row["clip"] == pytest.approx(reference[key]["clip"], abs=1e-6)
