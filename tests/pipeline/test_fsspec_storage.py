"""Run directories on fsspec filesystems: `memory://` stands in for a bucket, `file://` for a local URL.

A run on `memory://` must commit exactly the bytes of a run on a local path, resume a shard whose
completion record is missing by recomputing only that shard, and keep its built models on a local path.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner
from upath import UPath

from synthvlm import pipeline
from synthvlm.cli import app
from synthvlm.config import load_config
from synthvlm.core import fsio
from synthvlm.core.errors import UserError
from synthvlm.stages.generate import GenerateStage
from synthvlm.stages.score import ScoreStage
from synthvlm.validate import validate_export
from tests.pipeline.helpers import cli, tree_digest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
MEMORY_RUN = "memory://synthvlm-tests/run"
SKIP = ("models/",)  # a remote run builds its models in the local cache instead


def _done_records(root: Path | UPath) -> dict[str, list[str]]:
    """Completion record names per stage (their content holds timings, so names are compared)."""
    return {stage: sorted(p.name for p in (root / stage / "done").glob("*.json")) for stage in pipeline.ORDER}


@pytest.fixture(scope="module")
def local_run(recipe_run: Path) -> Path:
    return recipe_run


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(folder))
        mp.delenv("SYNTHVLM_BUILTIN_MODELS")  # where a remote run keeps its models is under test here
        yield folder


@pytest.fixture(scope="module")
def memory_run(cache: Path) -> Iterator[UPath]:
    """`synthvlm run configs/demo.yaml --run memory://...` in-process: the memory store is per process."""
    result = CliRunner().invoke(app, ["run", str(DEMO), "--run", MEMORY_RUN, "-q"])
    assert result.exit_code == 0, result.output
    assert f"run directory: {MEMORY_RUN}" in result.output
    run = UPath(MEMORY_RUN)
    yield run
    run.fs.rm(run.path, recursive=True)


def test_memory_run_matches_local_run_byte_for_byte(local_run, memory_run, cache):
    local, remote = tree_digest(local_run, skip=SKIP), tree_digest(memory_run, skip=SKIP)
    assert sorted(remote) == sorted(local)
    assert remote == local
    assert len(remote) == 117  # ingest 8, curate 19, generate 20, score 20, select 4, export 46
    assert sum(k.startswith("generate/images/") for k in remote) == 6
    assert _done_records(memory_run) == _done_records(local_run)
    assert sum(len(v) for v in _done_records(memory_run).values()) == 33
    # Nothing but outputs in the bucket: no temporary names, no models.
    assert not [p for p in memory_run.rglob("*") if ".tmp-" in p.name]
    assert not (memory_run / "models").exists()
    models = fsio.local_root(memory_run) / "models"
    assert models.parent.parent == cache / "synthvlm" / "runs"
    assert sorted(p.name for p in models.iterdir()) == ["tiny-clip", "tiny-sdxl"]


def test_status_json_reads_the_bucket(local_run, memory_run):
    result = CliRunner().invoke(app, ["status", MEMORY_RUN, "--json"])
    assert result.exit_code == 0, result.output
    remote = json.loads(result.output)["stages"]
    local = pipeline.status(local_run)["stages"]
    for f in (*remote.values(), *local.values()):
        f["extra"].pop("model_seconds", None)  # wall time
    assert remote == local
    assert remote["select"]["kept"] == 24 and remote["export"]["tasks_done"] == 10


def test_exports_in_the_bucket_validate(memory_run):
    for fmt in ("llava", "webdataset", "parquet"):
        assert validate_export(f"{MEMORY_RUN}/export/{fmt}") == []


def test_rerun_of_a_finished_bucket_run_does_nothing(memory_run, monkeypatch):
    before = tree_digest(memory_run)
    ran: list[str] = []
    run_task = ScoreStage.run_task
    monkeypatch.setattr(
        ScoreStage, "run_task", lambda self, task: ran.append(task.name) or run_task(self, task)
    )
    pipeline.run(MEMORY_RUN, load_config(DEMO), progress=False)
    assert ran == []
    assert tree_digest(memory_run) == before


def test_shard_without_completion_record_is_recomputed_alone(local_run, memory_run, monkeypatch):
    """A killed worker's shard: output half there (or stale), no completion record -> only it reruns."""
    stage = memory_run / "generate"
    tar = stage / "images" / "part-00003.tar"
    (stage / "done" / "generate-00003.json").unlink()
    (stage / "complete.json").unlink()
    tar.write_bytes(tar.read_bytes()[:1000])  # a partial object left behind
    ran: list[str] = []
    run_task = GenerateStage.run_task
    monkeypatch.setattr(
        GenerateStage, "run_task", lambda self, task: ran.append(task.name) or run_task(self, task)
    )
    funnels = pipeline.run(MEMORY_RUN, load_config(DEMO), stages=["generate"], progress=False)
    assert ran == ["generate-00003"]
    assert funnels["generate"]["kept"] == 86 and funnels["generate"]["tasks_done"] == 6
    assert tree_digest(memory_run, skip=SKIP) == tree_digest(local_run, skip=SKIP)
    assert _done_records(memory_run) == _done_records(local_run)


def test_from_deletes_the_stages_in_the_bucket(local_run, memory_run):
    pipeline.run(MEMORY_RUN, load_config(DEMO), stages=["select"], recompute_from="select", progress=False)
    assert not (memory_run / "export").exists()
    assert pipeline.status(MEMORY_RUN)["stages"]["select"]["complete"] is True
    pipeline.run(MEMORY_RUN, load_config(DEMO), stages=["export"], progress=False)
    assert tree_digest(memory_run, skip=SKIP) == tree_digest(local_run, skip=SKIP)


def test_stage_pickles_with_its_bucket_path():
    """Ray ships the stage object to its workers: the URL and its filesystem must survive pickling."""
    stage = ScoreStage(MEMORY_RUN, load_config(DEMO))
    copy = pickle.loads(pickle.dumps(stage))
    assert copy.run_dir == stage.run_dir == UPath(MEMORY_RUN)
    assert str(copy.layout.shard(2)) == f"{MEMORY_RUN}/score/data/part-00002.parquet"
    assert copy.models_dir == stage.models_dir


def test_file_url_is_the_local_path(local_run, tmp_path):
    run = tmp_path / "run"
    url = f"file://{run}"
    captions = DEMO.resolve().parent / "demo_captions.jsonl"  # configs/demo.yaml links to the package copy
    result = cli("ingest", str(captions), "--run", url, "--shard-rows", "20", "-q")
    assert result.returncode == 0, result.stderr
    result = cli("curate", "--run", url, "--recipe", "synthvlm", "-q")
    assert result.returncode == 0, result.stderr
    assert (run / "config.yaml").is_file() and (run / "curate" / "complete.json").is_file()
    status = json.loads(cli("status", url, "--json").stdout)["stages"]
    assert (status["ingest"]["kept"], status["curate"]["kept"]) == (50, 43)
    wanted = ("ingest/", "curate/")
    reference = {k: v for k, v in tree_digest(local_run).items() if k.startswith(wanted)}
    assert tree_digest(run) == reference
    assert len(reference) == 27  # ingest 8, curate 19
    assert fsio.run_path(url) == run


def test_url_where_a_local_path_is_needed_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="takes a local path, not a URL"):
        pipeline.status(Path("memory://synthvlm-tests/other"))  # what Path() makes of the URL
    with pytest.raises(UserError, match="Unsupported filesystem: 'nosuchfs'"):
        fsio.run_path("nosuchfs://bucket/run")


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed here")
def test_missing_backend_names_the_package():
    result = cli("status", "s3://bucket/run", "--json")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: s3://bucket/run: Install s3fs to access S3")
    assert len(result.stderr.strip().splitlines()) == 1
