"""The ingest stage on a small pool, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from synthvlm import pipeline
from synthvlm.config import RunConfig
from synthvlm.core import fsio


def _pool(tmp_path: Path) -> Path:
    path = tmp_path / "pool.jsonl"
    lines = [json.dumps({"id": f"c{i}", "caption": f"caption number {i}"}) for i in range(10)]
    path.write_text("\n".join(lines[:2] + ["{broken"] + lines[2:]) + "\n")
    return path


def test_limit_takes_the_first_records_and_is_in_the_fingerprint(tmp_path: Path):
    config = RunConfig().updated("ingest", inputs=[str(_pool(tmp_path))], shard_rows=2, limit=4)
    result = pipeline.run(tmp_path / "run", config, stages=["ingest"], progress=False)["ingest"]
    assert (result["in"], result["kept"], result["dropped"]) == (4, 3, {"bad_json": 1})
    ids = pq.read_table(tmp_path / "run" / "ingest" / "data").column("id").to_pylist()
    assert ids == ["c0", "c1", "c2"]
    settings = fsio.read_json(tmp_path / "run" / "ingest" / "fingerprint.json")["settings"]
    assert settings["limit"] == 4


def test_no_limit_leaves_the_fingerprint_as_before(tmp_path: Path):
    config = RunConfig().updated("ingest", inputs=[str(_pool(tmp_path))])
    result = pipeline.run(tmp_path / "run", config, stages=["ingest"], progress=False)["ingest"]
    assert (result["in"], result["kept"]) == (11, 10)
    settings = fsio.read_json(tmp_path / "run" / "ingest" / "fingerprint.json")["settings"]
    assert sorted(settings) == ["files", "format", "max_caption_chars", "shard_rows", "skip_bad_files"]
