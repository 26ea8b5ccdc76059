"""verify / repair: damaged committed files are found from their completion records and redone."""

from __future__ import annotations

import hashlib
from pathlib import Path

from synthvlm.config import RunConfig
from synthvlm.core import driver, fsio
from synthvlm.core.verify import repair, verify
from synthvlm.executors import LocalExecutor
from tests.core.test_driver import Evens


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_completion_records_list_every_file_with_size_and_sha256(tmp_path: Path):
    driver.run_stage(Evens(tmp_path, RunConfig()), LocalExecutor(progress=False))
    record = fsio.read_json(tmp_path / "evens" / "done" / "keep-00001.json")
    shard = tmp_path / "evens" / "data" / "part-00001.parquet"
    rejected = tmp_path / "evens" / "rejected" / "keep-00001.parquet"
    assert record["files"] == {
        "evens/data/part-00001.parquet": {
            "bytes": shard.stat().st_size,
            "sha256": fsio.file_digest(shard)[1],
        },
        "evens/rejected/keep-00001.parquet": {
            "bytes": rejected.stat().st_size,
            "sha256": fsio.file_digest(rejected)[1],
        },
    }


def test_truncated_and_flipped_files_are_found_and_redone_to_the_same_bytes(tmp_path: Path):
    driver.run_stage(Evens(tmp_path, RunConfig()), LocalExecutor(progress=False))
    before = _digests(tmp_path)
    assert verify(tmp_path, ["evens"], full=True) == (6, [])
    truncated = tmp_path / "evens" / "data" / "part-00000.parquet"
    size = truncated.stat().st_size
    truncated.write_bytes(truncated.read_bytes()[:50])
    flipped = tmp_path / "evens" / "rejected" / "keep-00002.parquet"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))

    checked, fast = verify(tmp_path, ["evens"])
    assert checked == 6 and [str(d) for d in fast] == [
        f"evens/keep-00000: evens/data/part-00000.parquet: 50 bytes, the task wrote {size}"
    ]
    _, damage = verify(tmp_path, ["evens"], full=True)
    assert [(d.task, d.path, d.problem) for d in damage] == [
        ("keep-00000", "evens/data/part-00000.parquet", fast[0].problem),
        (
            "keep-00002",
            "evens/rejected/keep-00002.parquet",
            "content differs from what the task wrote (sha256)",
        ),
    ]
    assert repair(tmp_path, damage) == ["evens/keep-00000", "evens/keep-00002"]
    Evens.ran = []
    driver.run_stage(Evens(tmp_path, RunConfig()), LocalExecutor(progress=False))
    assert Evens.ran == [0, 2]  # exactly the damaged tasks
    assert _digests(tmp_path) == before
    assert verify(tmp_path, ["evens"], full=True) == (6, [])
