"""A disk that fills up mid-stage: one line naming the file, nothing half-written committed, and the rerun
after space is freed gives the bytes of an uninterrupted run.

The run directory lives on a small tmpfs (root only) that a filler file leaves room on for ingest, curate
and about two thirds of generate, sized from the reference run's own files (tmpfs counts whole 4 KiB
pages per file and nothing for folders). Deleting the filler frees the space.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.pipeline.helpers import cli, done_count, tmp_exists, tree_digest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.fault  # process-level fault trials: make test-all
DEMO = REPO / "configs" / "demo.yaml"
PAGE = 4096
GENERATE_TASKS = 6  # 11 captions kept x 2 candidates, 4 images per shard


def _pages(path: Path) -> int:
    """Bytes a file takes on tmpfs: whole pages."""
    return -(-path.stat().st_size // PAGE) * PAGE


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo recipe on its first 12 captions: six generate shards of four images."""
    data = yaml.safe_load(DEMO.read_text())
    data["ingest"]["inputs"] = [str(DEMO.resolve().parent / name) for name in data["ingest"]["inputs"]]
    data["ingest"]["limit"] = 12
    data["generate"]["images_per_shard"] = 4
    data["select"]["top_k"] = 6
    data["export"]["rows_per_shard"] = 4
    path = tmp_path_factory.mktemp("recipe") / "demo-small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def reference(recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same recipe uninterrupted, on an ordinary disk."""
    run = tmp_path_factory.mktemp("ref") / "run"
    result = cli("run", str(recipe), "--run", str(run), "-q")
    assert result.returncode == 0, result.stderr
    assert len(list((run / "generate" / "done").glob("generate-*.json"))) == GENERATE_TASKS
    return run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own, unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    size_k = 16 * 1024
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_k}k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def test_full_disk_mid_generate_fails_in_one_line_and_resumes_to_identical_bytes(
    recipe: Path, reference: Path, small_disk: Path
) -> None:
    files = [p for p in reference.rglob("*") if p.is_file()]
    later = ("generate", "score", "select", "export")
    before = sum(_pages(p) for p in files if p.relative_to(reference).parts[0] not in later)
    generate = sum(_pages(p) for p in files if p.relative_to(reference).parts[0] == "generate")
    # a shard in flight also holds its batches until it commits: about two of the six shards fit
    room = before + generate * 2 // 3 // PAGE * PAGE
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - room))
    assert shutil.disk_usage(small_disk).free == room

    run = small_disk / "run"
    failed = cli("run", str(recipe), "--run", str(run), "-q")
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr, failed.stderr
    match = re.fullmatch(
        rf"error: cannot write ({re.escape(str(run))}/generate/\S+): the disk is full \(No space left on "
        r"device\); free space there and rerun the command: committed shards are kept\n",
        failed.stderr,
    )
    assert match, failed.stderr
    shard = int(re.search(r"(?:part|generate)-(\d{5})", match.group(1)).group(1))

    # Killed by the disk inside generate: earlier stages complete, some shards committed, not the failing one.
    assert (run / "curate" / "complete.json").exists()
    assert not (run / "generate" / "complete.json").exists()
    committed = done_count(run / "generate", "generate")
    assert 1 <= committed < GENERATE_TASKS
    print(f"disk full writing {match.group(1)} after {committed} generate shards committed")
    assert not (run / "generate" / "done" / f"generate-{shard:05d}.json").exists()
    assert not (run / "score").exists()
    # Nothing half-written: no temporary file, every file under a final name is whole (the bytes the
    # uninterrupted run has there; the batches committed inside unfinished shards read back whole), and
    # the committed records match their files.
    assert not tmp_exists(run)
    expected = tree_digest(reference)
    partial = tree_digest(run, skip=("generate/parts/",))
    assert partial and {k: expected.get(k) for k in partial} == partial
    for part in (run / "generate" / "parts").rglob("*.parquet"):
        pq.read_table(part)
    for part in (run / "generate" / "parts").rglob("*.tar"):
        with tarfile.open(part) as tar:
            assert tar.getmembers()
    checked = cli("verify", str(run), "--full")
    assert checked.returncode == 0, checked.stderr

    filler.unlink()
    resumed = cli("run", str(recipe), "--run", str(run), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert tree_digest(run) == expected
    assert sorted(p.name for p in run.glob("*/done/*.json")) == sorted(
        p.name for p in reference.glob("*/done/*.json")
    )
    assert not tmp_exists(run)
