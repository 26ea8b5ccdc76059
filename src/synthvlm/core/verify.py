"""Recheck a run's committed outputs against their completion records, and repair what is damaged.

Every completion record lists the size and sha256 of each file its task wrote. `verify` compares them
with what is on disk (sizes by default: a metadata read per file; hashes with `full`), and `repair`
deletes the records of damaged tasks (and their stage's `complete.json`), so the next run of the same
command regenerates exactly those tasks — with the same bytes, since a task's outputs depend only on the
config and its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthvlm.core import fsio, layout


@dataclass(frozen=True)
class Damage:
    """A committed file that is not what its task wrote."""

    stage: str
    task: str
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.stage}/{self.task}: {self.path}: {self.problem}"


def _resolve(run_dir: fsio.RunPath, name: str) -> fsio.RunPath:
    """A recorded name: relative to the run, or an absolute path / URL for files written outside it."""
    return fsio.run_path(name) if "://" in name or name.startswith("/") else run_dir / name


def verify(run_dir: fsio.RunPath, stages: list[str], *, full: bool = False) -> tuple[int, list[Damage]]:
    """(files checked, damage found) over every completion record of `stages`."""
    checked = 0
    damage: list[Damage] = []
    for name in stages:
        folder = layout.StageDir(run_dir, name)
        for record in folder.done_records():
            files = fsio.read_json(record).get("files", {})
            for rel, expected in files.items():
                checked += 1
                path = _resolve(run_dir, rel)
                problem = _check(path, expected, full=full)
                if problem is not None:
                    damage.append(Damage(name, record.stem, rel, problem))
    return checked, damage


def _check(path: fsio.RunPath, expected: dict[str, object], *, full: bool) -> str | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != expected["bytes"]:
        return f"{size} bytes, the task wrote {expected['bytes']}"
    if full:
        with fsio.local_copy(path) as local:
            if fsio.file_digest(local)[1] != expected["sha256"]:
                return "content differs from what the task wrote (sha256)"
    return None


def repair(run_dir: fsio.RunPath, damage: list[Damage]) -> list[str]:
    """Delete the completion records of damaged tasks and their stages' completion; returns the tasks."""
    tasks = sorted({(d.stage, d.task) for d in damage})
    for stage, task in tasks:
        folder = layout.StageDir(run_dir, stage)
        for path in (folder.done(task), folder.complete):
            if path.exists():
                path.unlink()
    return [f"{stage}/{task}" for stage, task in tasks]
