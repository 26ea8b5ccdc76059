"""Training data: every export layout streams every record, LLaVA JSONs mix by ratio to exact counts."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from synthvlm.train.data import (
    DataSpec,
    LlavaSource,
    Mixture,
    ParquetSource,
    WebDatasetSource,
    mixture_counts,
    open_source,
    open_training_data,
)

RECORDS = 8


def _entries(export: Path) -> list[dict]:
    return json.loads((export / "llava" / "synthvlm_pretrain.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "layout, cls", [("llava", LlavaSource), ("webdataset", WebDatasetSource), ("parquet", ParquetSource)]
)
def test_each_layout_streams_every_record(export, layout, cls):
    source = open_source(DataSpec(export / layout))
    assert isinstance(source, cls)
    samples = list(source)
    assert len(source) == len(samples) == RECORDS
    entries = _entries(export)
    expected = {e["id"]: e["conversations"][1]["value"] for e in entries}
    assert {s.id: s.caption for s in samples} == expected
    # The same JPEG bytes reach the trainer whichever layout it reads (LLaVA's in rank-order sub-folders).
    images = export / "llava" / "images"
    files = {e["id"]: images / e["image"] for e in entries}
    for s in samples:
        data = s.image.read_bytes() if isinstance(s.image, Path) else s.image
        assert data == files[s.id].read_bytes()
        assert s.load_image().mode == "RGB"


def test_llava_source_holds_paths_not_pixels(export):
    source = open_source(DataSpec(export / "llava"))
    assert all(isinstance(s.image, Path) for s in source)


def test_webdataset_streams_shard_by_shard(export, tmp_path):
    folder = tmp_path / "webdataset"
    shutil.copytree(export / "webdataset", folder)
    shards = sorted(folder.glob("*.tar"))
    assert len(shards) == 2  # 8 rows, 5 per shard
    shards[1].write_bytes(b"not a tar")
    stream = iter(WebDatasetSource.from_folder(folder))
    first = [next(stream) for _ in range(5)]  # the whole first shard, without touching the second
    assert [s.id for s in first] == [e["id"] for e in _entries(export)[:5]]
    with pytest.raises(tarfile.ReadError):
        next(stream)


def test_parquet_keeps_export_order(export):
    source = open_training_data([DataSpec(export / "parquet")], seed=0)
    assert [s.id for s in source] == [e["id"] for e in _entries(export)]


def test_mixture_counts_round_half_up():
    assert mixture_counts([8, 24, 3, 10], [0.5, 1.25, 1 / 3, 0.25]) == [4, 30, 1, 3]
    with pytest.raises(ValueError, match="positive"):
        mixture_counts([8], [0.0])


def _second_json(export: Path, tmp_path: Path) -> Path:
    """Another LLaVA file over the same images, with its own ids (stands in for e.g. LLaVA-558K)."""
    entries = [{**e, "id": f"b-{e['id']}"} for e in _entries(export)]
    path = tmp_path / "other.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def test_mixing_by_ratio_gives_exact_counts(export, tmp_path):
    other = _second_json(export, tmp_path)
    specs = [
        DataSpec(export / "llava", ratio=0.5),
        DataSpec(other, image_folder=export / "llava" / "images", ratio=2.0),
    ]
    mix = open_training_data(specs, seed=0)
    assert isinstance(mix, Mixture) and mix.counts == [4, 16]
    ids = [s.id for s in mix]
    assert len(mix) == len(ids) == 20
    counts = Counter(ids)
    ours = {i: n for i, n in counts.items() if not i.startswith("b-")}
    theirs = {i: n for i, n in counts.items() if i.startswith("b-")}
    assert len(ours) == 4 and set(ours.values()) == {1}  # half, without replacement
    assert len(theirs) == RECORDS and set(theirs.values()) == {2}  # every record exactly twice
    # Fixed seed: the same order every time; another seed or epoch reshuffles but keeps the counts.
    assert [s.id for s in open_training_data(specs, seed=0)] == ids
    for other_mix in (open_training_data(specs, seed=1), open_training_data(specs, seed=0, epoch=1)):
        assert [s.id for s in other_mix] != ids
        assert other_mix.counts == [4, 16]


def test_data_spec_parsing():
    assert DataSpec.parse("a.json,images=/x/img,ratio=0.5") == DataSpec(Path("a.json"), Path("/x/img"), 0.5)
    assert DataSpec.parse("runs/export/llava") == DataSpec(Path("runs/export/llava"))
    with pytest.raises(ValueError, match="bad data option"):
        DataSpec.parse("a.json,weight=2")


def test_bad_inputs_are_value_errors(export, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps([{"id": "x1", "image": "a.jpg", "conversations": [{"from": "human", "value": "hi"}]}])
    )
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="'x1' is not a pretraining pair"):
        open_source(DataSpec(bad))
    with pytest.raises(ValueError, match="no manifest.json"):
        open_source(DataSpec(tmp_path / "images"))
    with pytest.raises(ValueError, match="need LLaVA JSON inputs"):
        open_training_data([DataSpec(export / "parquet", ratio=0.5)], seed=0)
    with pytest.raises(ValueError, match="image folder"):
        open_source(DataSpec(bad, image_folder=tmp_path / "missing"))
