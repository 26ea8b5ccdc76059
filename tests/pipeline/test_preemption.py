"""Preemption inside a shard: SIGKILL loses at most the batch in flight, SIGTERM stops at a batch boundary.

Generate and score commit every batch as a part (`core.checkpoint`); a rerun resumes after the last part
and assembles the shard from the parts, so the final bytes equal an uninterrupted run's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.pipeline.helpers import cli, tree_digest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.fault  # process-level fault trials: make test-all
CAPTIONS = REPO / "src" / "synthvlm" / "data" / "demo_captions.jsonl"
BATCH = 2
"""Images per pipeline call: the demo's 94 images in one shard are 47 parts."""


def _recipe(folder: Path) -> Path:
    recipe = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    recipe["ingest"]["inputs"] = [str(CAPTIONS)]
    recipe["generate"].update(batch_size=BATCH, images_per_shard=100)
    recipe["score"]["batch_size"] = 4
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _recipe(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def reference(recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    run = tmp_path_factory.mktemp("reference") / "run"
    result = cli("run", str(recipe), "--run", str(run), "--until", "score", "-q")
    assert result.returncode == 0, result.stderr
    return tree_digest(run, skip=("models/",))


def _start(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "synthvlm", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _parts(stage: Path, task: str) -> dict[str, tuple[int, int]]:
    """Each committed part's rows file -> (inode, mtime): a rewritten part would get a new inode."""
    folder = stage / "parts" / task
    if not folder.exists():
        return {}
    out = {}
    for path in folder.glob("*.rows.parquet"):
        try:
            st = path.stat()
        except FileNotFoundError:  # the task finished and its parts were removed under us
            continue
        out[path.name] = (st.st_ino, st.st_mtime_ns)
    return out


def _kill_inside(run: Path, stage: str, task: str, kills: int, seed: int, args: list[str]) -> list[int]:
    """SIGKILL `synthvlm ARGS` at `kills` random moments while `task` has committed parts but is not done.

    Returns the committed part count at each kill. Asserts every part is written exactly once: a rerun
    goes on after the last committed part, so each kill loses only the batch in flight.
    """
    rng = random.Random(seed)
    folder = run / stage
    seen: dict[str, tuple[int, int]] = {}
    at_kill = []
    for _ in range(kills):
        proc = _start(*args)
        try:
            target = len(seen) + 1  # at least one new part, so every attempt gets on
            deadline = time.monotonic() + 600
            while len(_parts(folder, task)) < target:
                assert proc.poll() is None, f"finished before the kill point: {proc.stderr.read()[-2000:]}"
                assert time.monotonic() < deadline, "kill point never reached"
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.06))  # anywhere in the next batch or two
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        assert not (folder / "done" / f"{task}.json").exists(), "the kill came after the task finished"
        now = _parts(folder, task)
        for name, ident in seen.items():
            assert now[name] == ident, f"{name} was written twice"
        assert sorted(now) == [f"part-{i:05d}.rows.parquet" for i in range(len(now))]
        seen = now
        at_kill.append(len(now))
    return at_kill


def test_sigkill_inside_a_generate_and_a_score_shard_loses_at_most_one_batch(recipe, reference, tmp_path):
    run = tmp_path / "run"
    assert cli("run", str(recipe), "--run", str(run), "--until", "curate", "-q").returncode == 0
    generate = ["generate", "--run", str(run), "-q"]
    at_kill = _kill_inside(run, "generate", "generate-00000", kills=10, seed=0, args=generate)
    assert len(at_kill) == 10 and at_kill == sorted(at_kill) and at_kill[-1] < 47
    assert cli(*generate).returncode == 0
    assert not (run / "generate" / "parts").exists() or not any((run / "generate" / "parts").iterdir())

    score = ["score", "--run", str(run), "-q"]
    at_kill = _kill_inside(run, "score", "score-00000", kills=3, seed=1, args=score)
    assert len(at_kill) == 3 and at_kill[-1] < 24  # 94 images in batches of 4
    result = cli(*score)
    assert result.returncode == 0, result.stderr
    assert tree_digest(run, skip=("models/",)) == reference


def test_sigterm_stops_at_a_batch_boundary_and_the_rerun_goes_on(recipe, reference, tmp_path):
    run = tmp_path / "run"
    assert cli("run", str(recipe), "--run", str(run), "--until", "curate", "-q").returncode == 0
    generate = ["generate", "--run", str(run), "-q"]
    folder = run / "generate"
    proc = _start(*generate)
    while len(_parts(folder, "generate-00000")) < 2:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.002)
    committed = len(_parts(folder, "generate-00000"))
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    lines = stderr.strip().splitlines()
    assert lines[0] == "SIGTERM: stopping after the batch in flight (at most 30 s; send it again to stop now)"
    assert lines[-1] == (
        f"interrupted: {run} keeps ingest (complete), curate (complete); "
        f"resume with: synthvlm generate --run {run} -q"
    )
    after = len(_parts(folder, "generate-00000"))
    assert committed <= after <= committed + 1  # the batch in flight was finished and committed
    assert not list(folder.rglob(".*.tmp-*"))

    proc = _start(*generate)
    while len(_parts(folder, "generate-00000")) < after + 1:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.002)
    # A second signal stops at once. Two different signals, as the kernel may merge two of the same kind
    # sent before the first is handled; either may be handled first.
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode in (130, 143), stderr
    assert "again; stopped now: the batch in flight is lost" in stderr

    result = cli("run", str(recipe), "--run", str(run), "--until", "score", "-q")
    assert result.returncode == 0, result.stderr
    assert tree_digest(run, skip=("models/",)) == reference


def test_sigterm_under_ray_stops_the_workers_and_a_local_rerun_goes_on(recipe, reference, tmp_path):
    pytest.importorskip("ray")
    run = tmp_path / "run"
    assert cli("run", str(recipe), "--run", str(run), "--until", "curate", "-q").returncode == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "RAY_worker_niceness": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "synthvlm", "generate", "--run", str(run), "--executor", "ray", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    folder = run / "generate"
    while len(_parts(folder, "generate-00000")) < 2:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: {run} keeps ingest (complete), curate (complete); "
        f"resume with: synthvlm generate --run {run} --executor ray -q"
    )
    kept = _parts(folder, "generate-00000")
    assert len(kept) >= 2 and not (folder / "done").exists()
    result = cli("run", str(recipe), "--run", str(run), "--until", "score", "-q")
    assert result.returncode == 0, result.stderr
    assert tree_digest(run, skip=("models/",)) == reference
