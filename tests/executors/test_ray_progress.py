"""A Ray run's progress shows the rows its workers report and their rate, while shards still run and, exactly,
when the phase ends: on actors (model stages) and as Ray tasks (light stages); a retried shard counts once."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synthvlm.config import RayConfig, RunConfig
from synthvlm.core import progress
from synthvlm.core.driver import run_stage
from synthvlm.core.progress import report_rows, rows_to
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.executors.ray import RayExecutor, _RowCounter, _RowPoll

REPO = Path(__file__).resolve().parents[2]


class Counting(Stage):
    """Three shards of 10 rows, each reported on its own: runs as Ray tasks."""

    name = "counting"

    def settings(self) -> dict[str, Any]:
        return {}

    def phases(self) -> list[str]:
        return ["count"]

    def tasks(self, phase: str) -> list[Task]:
        return [Task(phase, i) for i in range(3)]

    def run_task(self, task: Task) -> TaskStats:
        for _ in range(10):
            report_rows(1)
        return TaskStats(10, 10)


class CountingOnActors(Counting):
    """The same shards on a pool of actors, as a model stage runs."""

    uses_model = True


class Waits(CountingOnActors):
    """One shard that reports 7 rows, then holds until the test has seen them."""

    def tasks(self, phase: str) -> list[Task]:
        return [Task(phase, 0)]

    def run_task(self, task: Task) -> TaskStats:
        report_rows(7)
        deadline = time.monotonic() + 60
        while not (self.run_dir / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return TaskStats(7, 7)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.setenv("RAY_worker_niceness", "0")  # Ray nices its workers; on a busy shared box they starve
        # workers import this module to unpickle the test stages above
        mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray
        ray.shutdown()


class Stepping:
    """A clock that moves 30 s at every reading: a phase reads it when it starts and for its final line."""

    def __init__(self) -> None:
        self.now = -30.0

    def __call__(self) -> float:
        self.now += 30.0
        return self.now


@pytest.mark.parametrize("stage", [Counting, CountingOnActors])
def test_the_final_line_counts_every_row_workers_reported(ray_local, stage, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "_now", Stepping())
    monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", "600")
    result = run_stage(stage(tmp_path / "run", RunConfig()), RayExecutor(config=RayConfig(), progress=True))
    assert (result["in"], result["tasks_done"]) == (30, 3)
    assert capsys.readouterr().out == "counting/count: 3/3 shards, 30 rows, 1.00 rows/s, 0:00:30 elapsed\n"


def test_rows_show_while_the_shard_still_runs(ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "_now", lambda: 0.0)
    monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", "0.05")
    run = tmp_path / "run"
    executor = RayExecutor(config=RayConfig(), progress=True)
    driver = threading.Thread(target=run_stage, args=(Waits(run, RunConfig()), executor))
    driver.start()
    live = "counting/count: 0/1 shards, 7 rows, 0:00:00 elapsed\n"
    seen, deadline = "", time.monotonic() + 60
    while live not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
        seen += capsys.readouterr().out
    (run / "release").touch()
    driver.join(60)
    seen += capsys.readouterr().out
    assert live in seen
    assert seen.endswith("counting/count: 1/1 shards, 7 rows, 0:00:00 elapsed\n")
    assert (run / "counting" / "done" / "count-00000.json").exists()


def test_a_retried_shard_counts_its_rows_once():
    counter, credited = _RowCounter(), []
    poll = _RowPoll(None, None)
    counter.add(1, 0, "first", 4)  # shard 0's worker committed 4 rows, then died
    counter.add(1, 1, "a", 3)
    counter.add(2, 0, "x", 50)  # another phase
    with rows_to(credited.append):
        for task, rows in counter.take(1).items():
            poll.credit(task, rows)
        counter.add(1, 0, "retry", 4)  # the retry reports the 4 resumed rows again, then 6 new ones
        for task, rows in counter.take(1).items():
            poll.credit(task, rows)
        counter.add(1, 0, "retry", 6)
        assert counter.take(1) == {0: 10}
        poll.credit(0, 10)
        poll.credit(0, 10)  # the finished task's result: nothing new
        poll.credit(1, 3)
    assert (credited, counter.take(1), counter.take(2)) == ([4, 3, 6], {}, {0: 50})
