"""Ray executor: byte parity with local runs, a worker killed mid-shard, a shard that keeps failing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synthvlm import pipeline
from synthvlm.config import RayConfig, RunConfig, load_config
from synthvlm.core.driver import run_stage
from synthvlm.core.errors import ShardFailedError, UserError
from synthvlm.core.stage import Task, TaskStats
from synthvlm.executors import LocalExecutor, make_executor
from synthvlm.executors.ray import RayExecutor, import_ray
from synthvlm.stages.score import ScoreStage
from tests.pipeline.helpers import mixed_recipe, tree_digest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
SKIP = ("models/",)  # tiny models are rebuilt per run directory; their bytes are not stage outputs


class DiesOnce(ScoreStage):
    """Score whose worker process SIGKILLs itself halfway through shard 1, on the first attempt only."""

    def run_task(self, task: Task) -> TaskStats:
        if task.index == 1:
            with open(self.run_dir / "attempts-1", "a") as fh:
                fh.write(f"{os.getpid()}\n")
            if len((self.run_dir / "attempts-1").read_text().split()) == 1:
                # what a worker killed mid-write leaves behind: a temporary file beside the output
                partial = self.layout.shard(1).with_name(f".part-00001.parquet.tmp-{os.getpid()}")
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_bytes(b"PAR1 half a shard")
                os.kill(os.getpid(), signal.SIGKILL)
        return super().run_task(task)


class AlwaysFails(ScoreStage):
    """Score whose shard 2 raises on every attempt."""

    def run_task(self, task: Task) -> TaskStats:
        if task.index == 2:
            with open(self.run_dir / "attempts-2", "a") as fh:
                fh.write(f"{os.getpid()}\n")
            raise ValueError("image shard is corrupt")
        return super().run_task(task)


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


@pytest.fixture(scope="module")
def config() -> RunConfig:
    return load_config(DEMO)


@pytest.fixture(scope="module")
def local_run(recipe_run: Path) -> Path:
    return recipe_run


def _through_generate(local_run: Path, dest: Path) -> Path:
    """A copy of the reference run with only ingest, curate and generate done."""
    shutil.copytree(
        local_run,
        dest,
        ignore=lambda d, names: [
            n for n in names if d == str(local_run) and n in ("score", "select", "export")
        ],
    )
    return dest


def test_ray_run_is_byte_identical_to_local(ray_local, config, local_run, tmp_path):
    run = tmp_path / "run"
    funnels = pipeline.run(run, config, executor="ray", progress=False)
    assert tree_digest(run, skip=SKIP) == tree_digest(local_run, skip=SKIP)
    assert len(tree_digest(run, skip=SKIP)) > 90
    expected = pipeline.status(local_run)["stages"]
    for name, funnel in funnels.items():
        assert {**funnel, "extra": None} == {**expected[name], "extra": None}, name
    assert funnels["score"]["extra"] == expected["score"]["extra"]
    assert funnels["select"]["kept"] == 24


@pytest.mark.fault  # a whole recipe on Ray, one actor pool per generator: a minute here
def test_ray_run_of_a_mixed_pool_is_byte_identical_to_local(ray_local, mixed_run, tmp_path):
    config = load_config(mixed_recipe(tmp_path, actors=1))
    run = tmp_path / "run"
    pipeline.run(run, config, executor="ray", progress=False)
    assert tree_digest(run, skip=SKIP) == tree_digest(mixed_run, skip=SKIP)
    counts = ("candidates", "images", "failed", "scored", "selected", "selection_share")

    def accounting(folder: Path) -> dict[str, dict[str, Any]]:
        return {n: {k: g[k] for k in counts} for n, g in pipeline.status(folder)["generators"].items()}

    assert accounting(run) == accounting(mixed_run)


@pytest.mark.fault
def test_worker_killed_mid_shard_is_retried_elsewhere(ray_local, config, local_run, tmp_path):
    run = _through_generate(local_run, tmp_path / "run")
    executor = RayExecutor(config=config.ray, progress=False)
    run_stage(DiesOnce(run, config), executor)
    pids = [int(p) for p in (run / "attempts-1").read_text().split()]
    assert len(pids) == 2 and pids[0] != pids[1]  # the second attempt ran in another actor
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    pipeline.run(run, config, stages=["select", "export"], executor="ray", progress=False)
    (run / "attempts-1").unlink()
    assert tree_digest(run, skip=SKIP) == tree_digest(local_run, skip=SKIP)


@pytest.mark.fault
def test_shard_that_keeps_failing_fails_the_stage_by_name(ray_local, config, local_run, tmp_path):
    run = _through_generate(local_run, tmp_path / "run")
    executor = RayExecutor(config=RayConfig(max_retries=1), progress=False)
    with pytest.raises(
        ShardFailedError,
        match=r"score: 1 shard\(s\) failed after 2 attempts each "
        r"\(score-00002: ValueError: image shard is corrupt\)",
    ):
        run_stage(AlwaysFails(run, config), executor)
    assert len((run / "attempts-2").read_text().split()) == 2
    done = sorted(p.name for p in (run / "score" / "done").iterdir())
    shards = len(list((run / "generate" / "data").glob("part-*.parquet")))
    assert shards == 6
    assert done == [f"score-{i:05d}.json" for i in range(shards) if i != 2]
    for i in (0, 1, 3, 4, 5):
        name = f"part-{i:05d}.parquet"
        assert (run / "score/data" / name).read_bytes() == (local_run / "score/data" / name).read_bytes()
    assert not (run / "score" / "data" / "part-00002.parquet").exists()
    assert not (run / "score" / "complete.json").exists()
    # a rerun after the cause is gone runs only the failed shard and completes the stage
    run_stage(ScoreStage(run, config), executor)
    assert tree_digest(run / "score") == tree_digest(local_run / "score")


def test_make_executor_builds_from_the_ray_section(config):
    executor = make_executor("ray", config=config.updated("ray", address="auto", actors=3), progress=False)
    assert isinstance(executor, RayExecutor)
    assert (executor.config.address, executor.config.actors, executor.config.max_retries) == ("auto", 3, 2)
    assert isinstance(make_executor("local", config=config), LocalExecutor)
    with pytest.raises(ValueError, match=r"unknown executor 'dask'; valid: \['local', 'ray'\]"):
        make_executor("dask")


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError, match=r"pip install 'synthvlm\[ray\]'"):
        import_ray()


def test_cli_does_not_import_ray():
    code = "import sys, synthvlm.cli, synthvlm.pipeline; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
