"""SIGKILL at several points of a stage, then resume: outputs are byte-identical to an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline.helpers import cli, done_count, kill_when, tree_digest

WORDS = "red blue small large dog cat boat tree house river field child woman man car street".split()


def make_pool(path: Path, n: int) -> None:
    """n JSONL records: varied captions, every 9th an exact duplicate (modulo case), every 97th broken."""
    with path.open("w") as fh:
        for i in range(n):
            if i % 97 == 5:
                fh.write('{"id": "broken", "caption": \n')
                continue
            words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6 + i % 5)]
            text = f"A {' '.join(words)} near number {i % 2000}."
            if i % 9 == 0 and i:
                text = text.upper()
            fh.write(json.dumps({"id": f"c{i}", "caption": text}) + "\n")


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    make_pool(path, 40_000)
    return path


@pytest.fixture(scope="module")
def reference(pool: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    run = tmp_path_factory.mktemp("ref") / "run"
    assert cli("ingest", str(pool), "--run", str(run), "--shard-rows", "1000", "-q").returncode == 0
    assert cli("curate", "--run", str(run), "-q").returncode == 0
    status = json.loads(cli("status", str(run), "--json").stdout)["stages"]
    assert status["ingest"]["in"] == 40_000
    assert status["ingest"]["dropped"] == {"bad_json": 413}
    for f in status.values():
        assert f["in"] == f["kept"] + sum(f["dropped"].values())
    assert status["curate"]["in"] == status["ingest"]["kept"]
    return tree_digest(run)


def _resume_after(tmp_path: Path, pool: Path, stage: str, ready) -> dict[str, str]:
    run = tmp_path / "run"
    if stage == "ingest":
        kill_when(["ingest", str(pool), "--run", str(run), "--shard-rows", "1000", "-q"], lambda: ready(run))
    else:
        assert cli("ingest", str(pool), "--run", str(run), "--shard-rows", "1000", "-q").returncode == 0
        kill_when(["curate", "--run", str(run), "-q"], lambda: ready(run))
    assert not (run / stage / "complete.json").exists()
    result = cli("ingest", str(pool), "--run", str(run), "--shard-rows", "1000", "-q")
    assert result.returncode == 0, result.stderr
    assert cli("curate", "--run", str(run), "-q").returncode == 0
    return tree_digest(run)


@pytest.mark.parametrize(
    ("stage", "ready"),
    [
        ("ingest", lambda run: done_count(run / "ingest", "read") >= 7),
        ("ingest", lambda run: done_count(run / "ingest", "read") >= 1),
        ("curate", lambda run: done_count(run / "curate", "filter") >= 3),
        ("curate", lambda run: done_count(run / "curate", "dedup-plan") >= 1),
        ("curate", lambda run: done_count(run / "curate", "dedup") >= 2),
    ],
    ids=[
        "ingest-after-7-shards",
        "ingest-after-1-shard",
        "curate-after-3-shards",
        "after-dedup-plan",
        "dedup-after-2",
    ],
)
@pytest.mark.fault
def test_killed_stage_resumes_to_identical_bytes(tmp_path, pool, reference, stage, ready):
    assert _resume_after(tmp_path, pool, stage, ready) == reference


def test_finished_run_does_no_work(tmp_path, pool):
    run = tmp_path / "run"
    assert cli("ingest", str(pool), "--run", str(run), "--shard-rows", "1000", "-q").returncode == 0
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*.parquet")}
    assert cli("ingest", str(pool), "--run", str(run), "--shard-rows", "1000", "-q").returncode == 0
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.parquet")} == before


def test_changed_config_is_refused_then_recomputed_with_from(tmp_path, pool):
    run = tmp_path / "run"
    assert cli("ingest", str(pool), "--run", str(run), "--shard-rows", "1000", "-q").returncode == 0
    assert cli("curate", "--run", str(run), "-q").returncode == 0
    refused = cli("curate", "--run", str(run), "--recipe", "none", "-q")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert (
        "stage 'curate'" in refused.stderr
        and "--from curate" in refused.stderr
        and "filters" in refused.stderr
    )
    assert "recipe: synthvlm" in (run / "config.yaml").read_text()  # the refused config was not saved
    done = cli("curate", "--run", str(run), "--recipe", "none", "--from", "curate", "-q")
    assert done.returncode == 0, done.stderr
    status = json.loads(cli("status", str(run), "--json").stdout)["stages"]
    assert set(status["curate"]["dropped"]) == {"duplicate_text"}


def test_input_edited_in_place_is_noticed(tmp_path):
    captions = tmp_path / "c.jsonl"
    captions.write_text('{"caption": "a red bus"}\n')
    run = str(tmp_path / "run")
    assert cli("ingest", str(captions), "--run", run, "-q").returncode == 0
    captions.write_text('{"caption": "a tan bus"}\n')  # same size, new content
    refused = cli("ingest", str(captions), "--run", run, "-q")
    assert refused.returncode == 2
    assert "stage 'ingest'" in refused.stderr and "(changed: ingest.inputs)" in refused.stderr
