"""`synthvlm caption` runs its stage as every stage command does: progress lines (numbered within a run of
several stages), the funnel, and a graceful stop that says what is kept and how to resume."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml
from PIL import Image

from synthvlm import pipeline
from synthvlm.config import RunConfig
from synthvlm.core import progress
from tests.pipeline.helpers import cli

MODEL = ("--model", "builtin:tiny-blip-caption", "--max-new-tokens", "6")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (24 + i, 20), (i * 40, 90, 200 - i)).save(folder / f"img{i}.png")
    return folder


def test_progress_lines_and_the_funnel(tmp_path, images, monkeypatch):
    monkeypatch.setattr(progress, "_now", lambda: 0.0)
    monkeypatch.delenv("SYNTHVLM_PROGRESS_INTERVAL", raising=False)
    result = cli("caption", str(images), "--run", str(tmp_path / "run"), *MODEL)
    assert (result.returncode, result.stdout) == (
        0,
        # one stage: no stage number, as with every single-stage command
        "caption: 1/1 shards, 5 images, 0:00:00 elapsed\ncaption: in 5, kept 5, dropped none\n",
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump({"caption": {"inputs": [str(images)], "model": MODEL[1], "max_new_tokens": 6}})
    )
    both = tmp_path / "both"
    result = cli("run", str(recipe), "--run", str(both), "--until", "ingest")
    assert (result.returncode, result.stdout.splitlines()[:4]) == (
        0,
        [
            "caption (stage 1/2): 1/1 shards, 5 images, 0:00:00 elapsed, run 0:00:00",
            "ingest/read (stage 2/2): 1 shard, 5 captions, 0:00:00 elapsed, run 0:00:00",
            "caption: in 5, kept 5, dropped none",
            "ingest: in 5, kept 5, dropped none",
        ],
    )  # then "run directory: ...", which the console wraps at its width


def test_ctrl_c_finishes_the_shard_in_flight_and_prints_the_resume_command(tmp_path, images, monkeypatch):
    from synthvlm.executors import local

    monkeypatch.delenv("SYNTHVLM_STOP_GRACE", raising=False)
    run = tmp_path / "run"
    run.mkdir()
    pipeline.save_run_config(run, RunConfig().updated("caption", shard_rows=2))  # 5 images: 3 shards
    ran: list[str] = []
    real = local.execute_task

    def ctrl_c_during_the_second_shard(stage, task):
        if ran:
            os.kill(os.getpid(), signal.SIGINT)  # a real signal, through the handler the CLI installs
        ran.append(task.name)
        return real(stage, task)

    monkeypatch.setattr(local, "execute_task", ctrl_c_during_the_second_shard)
    args = ["caption", str(images), "--run", str(run), *MODEL, "-q"]
    result = cli(*args)
    assert (result.returncode, result.stdout, result.stderr) == (
        130,
        "",
        "SIGINT: stopping after the batch in flight (at most 30 s; send it again to stop now)\n"
        f"interrupted: {run} keeps caption (2/3 shards); resume with: synthvlm {' '.join(args)}\n",
    )
    assert ran == ["caption-00000", "caption-00001"]  # the second finished and was committed

    def recorded(stage, task):
        ran.append(task.name)
        return real(stage, task)

    ran.clear()
    monkeypatch.setattr(local, "execute_task", recorded)
    result = cli(*args)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "caption: in 5, kept 5, dropped none\n",
        "",
    )
    assert ran == ["caption-00002"]
