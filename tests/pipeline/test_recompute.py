"""`--from`: refused commands delete nothing; a recompute replaces exports outside the run too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Demo, copy_demo
from tests.pipeline.helpers import cli


@pytest.fixture(scope="module")
def demo(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's demo folder: these tests change it."""
    return copy_demo(demo, tmp_path_factory.mktemp("recompute") / "D")


def _complete(run: Path) -> dict[str, bool]:
    stages = json.loads(cli("status", str(run), "--json").stdout)["stages"]
    return {name: f["complete"] for name, f in stages.items()}


def _images(demo: Path) -> int:
    return len(list((demo / "export" / "llava" / "images").rglob("*.jpg")))


def test_refused_commands_delete_nothing(demo):
    run = demo / "run"
    all_done = dict.fromkeys(["ingest", "curate", "generate", "score", "select", "export"], True)
    assert _complete(run) == all_done

    changed = cli("curate", "--run", str(run), "--recipe", "none", "--from", "select", "-q")
    assert changed.returncode == 2
    assert changed.stderr.startswith("error: stage 'curate'") and changed.stderr.count("\n") == 1

    too_early = cli("select", "--run", str(run), "--from", "curate", "-q")
    assert too_early.returncode == 2
    assert too_early.stderr == (
        "error: --from curate would delete 'score', which 'select' needs; use --from select, or "
        f"recompute the chain with `synthvlm run RECIPE --run {run} --from curate`\n"
    )
    assert _complete(run) == all_done
    assert _images(demo) == 24


def test_from_replaces_an_export_folder_outside_the_run(demo):
    run = demo / "run"
    stale = demo / "export" / "llava" / "images" / "stale.jpg"
    stale.write_bytes(b"not ours")
    result = cli("select", "--run", str(run), "--top-k", "10", "--from", "select", "-q")
    assert result.returncode == 0, result.stderr
    assert not (demo / "export").exists() or not any((demo / "export").iterdir())
    assert cli("export", "--run", str(run), "-q").returncode == 0
    assert _images(demo) == 10
    assert len(json.loads((demo / "export" / "llava" / "synthvlm_pretrain.json").read_text())) == 10
    for fmt in ("llava", "webdataset", "parquet"):
        check = cli("validate", str(demo / "export" / fmt))
        assert check.returncode == 0, check.stderr
    assert len(list((demo / "export" / "webdataset").glob("*.tar"))) == 1
