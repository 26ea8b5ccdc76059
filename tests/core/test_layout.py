"""The run layout: the one place that names run folders and shards."""

from __future__ import annotations

from pathlib import Path

from synthvlm.core import layout


def test_shard_and_task_names_round_trip():
    assert layout.shard_name(3) == "part-00003.parquet"
    assert layout.shard_name(12, ".tar") == "part-00012.tar"
    assert layout.shard_name(7, "") == "part-00007"
    assert layout.task_name("neardup-plan", 4) == "neardup-plan-00004"
    name = "neardup-plan-00004"
    assert (layout.task_phase(name), layout.task_index(name)) == ("neardup-plan", 4)


def test_stage_paths(tmp_path: Path):
    gen = layout.StageDir(tmp_path, "generate")
    assert gen.shard(2) == tmp_path / "generate" / "data" / "part-00002.parquet"
    assert gen.timing(2) == tmp_path / "generate" / "timing" / "part-00002.parquet"
    assert gen.image_shard(2) == tmp_path / "generate" / "images" / "part-00002.tar"
    assert gen.image_shard_ref(2) == "generate/images/part-00002.tar"
    assert gen.done("generate-00002") == tmp_path / "generate" / "done" / "generate-00002.json"
    assert gen.rejected("generate-00002") == tmp_path / "generate" / "rejected" / "generate-00002.parquet"
    cap = layout.StageDir(tmp_path, "caption")
    assert cap.extracted_images(1) == tmp_path / "caption" / "images" / "part-00001"
    export = layout.StageDir(tmp_path, "export")
    assert export.llava_part(0) == tmp_path / "export" / "llava-parts" / "part-00000.json"


def test_shards_are_listed_in_index_order_and_only_shards(tmp_path: Path):
    folder = tmp_path / "score" / "data"
    folder.mkdir(parents=True)
    for name in ("part-00010.parquet", "part-00002.parquet", ".part-00003.parquet.tmp-1", "notes.txt"):
        (folder / name).write_bytes(b"")
    assert [p.name for p in layout.StageDir(tmp_path, "score").shards()] == [
        "part-00002.parquet",
        "part-00010.parquet",
    ]


def test_export_paths(tmp_path: Path):
    out = layout.ExportDir(tmp_path)
    assert layout.ExportDir.webdataset_shard(out.format_dir("webdataset"), 1) == (
        tmp_path / "webdataset" / "shard-00001.tar"
    )
    llava = out.format_dir("llava")
    assert layout.ExportDir.llava_json(llava) == tmp_path / "llava" / "synthvlm_pretrain.json"
    assert layout.ExportDir.manifest(out.format_dir("parquet")) == tmp_path / "parquet" / "manifest.json"
