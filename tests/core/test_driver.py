"""The driver on a toy stage: commits, resume, fingerprints, funnel, reset — in-process, no models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from synthvlm.config import RunConfig
from synthvlm.core import driver, fsio
from synthvlm.core.errors import UserError
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.executors import LocalExecutor


class Evens(Stage):
    """Keeps the even numbers of `n` rows, `size` rows per task; records how often tasks ran."""

    name = "evens"
    ran: list[int] = []

    def __init__(self, run_dir: Any, config: RunConfig, *, n: int = 10, size: int = 4) -> None:
        super().__init__(run_dir, config)
        self.n, self.size = n, size

    def settings(self) -> dict[str, Any]:
        return {"n": self.n, "size": self.size}

    def phases(self) -> list[str]:
        return ["keep"]

    def tasks(self, phase: str) -> list[Task]:
        starts = range(0, self.n, self.size)
        return [Task(phase, i, (s, min(s + self.size, self.n))) for i, s in enumerate(starts)]

    def run_task(self, task: Task) -> TaskStats:
        Evens.ran.append(task.index)
        start, end = task.payload
        values = list(range(start, end))
        kept = [v for v in values if v % 2 == 0]
        fsio.write_table(self.layout.shard(task.index), pa.table({"v": pa.array(kept, pa.int64())}))
        self.write_rejected(task, [{"id": str(v), "reason": "odd"} for v in values if v % 2])
        odd = len(values) - len(kept)
        return TaskStats(len(values), len(kept), {"odd": odd} if odd else {})


@pytest.fixture(autouse=True)
def _reset_counter():
    Evens.ran = []


def test_run_commits_every_task_and_the_funnel_adds_up(tmp_path: Path):
    result = driver.run_stage(Evens(tmp_path, RunConfig()), LocalExecutor(progress=False))
    assert result == {
        "in": 10,
        "kept": 5,
        "dropped": {"odd": 5},
        "extra": {},
        "tasks_done": 3,
        "tasks_total": 3,
        "complete": True,
    }
    assert Evens.ran == [0, 1, 2]
    assert [p.name for p in Evens(tmp_path, RunConfig()).layout.shards()] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    record = fsio.read_json(tmp_path / "evens" / "done" / "keep-00002.json")
    assert {k: v for k, v in record.items() if k != "files"} == {
        "in": 2,
        "kept": 1,
        "dropped": {"odd": 1},
        "extra": {},
    }
    assert sorted(record["files"]) == ["evens/data/part-00002.parquet", "evens/rejected/keep-00002.parquet"]


def test_a_committed_task_never_runs_again(tmp_path: Path):
    stage = Evens(tmp_path, RunConfig())
    assert driver.execute_task(stage, Task("keep", 1, (4, 8))).kept == 2
    driver.run_stage(stage, LocalExecutor(progress=False))
    assert Evens.ran == [1, 0, 2]
    driver.run_stage(stage, LocalExecutor(progress=False))  # finished: no work at all
    assert Evens.ran == [1, 0, 2]


def test_changed_settings_are_refused_naming_the_keys(tmp_path: Path):
    driver.run_stage(Evens(tmp_path, RunConfig()), LocalExecutor(progress=False))
    with pytest.raises(UserError) as info:
        driver.run_stage(Evens(tmp_path, RunConfig(), size=5), LocalExecutor(progress=False))
    assert "(changed: settings.size); rerun with --from evens" in str(info.value)
    driver.reset_stages(tmp_path, ["evens"])
    assert not (tmp_path / "evens").exists()
    again = driver.run_stage(Evens(tmp_path, RunConfig(), size=5), LocalExecutor(progress=False))
    assert again["tasks_done"] == 2


def test_stats_that_do_not_add_up_are_a_bug(tmp_path: Path):
    with pytest.raises(AssertionError, match="in != kept"):
        driver.commit(Evens(tmp_path, RunConfig()), Task("keep", 0), TaskStats(3, 1, {"odd": 1}), {})
