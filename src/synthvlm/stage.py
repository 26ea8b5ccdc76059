"""The stage contract, the shared task runner every executor calls, and the run driver.

A stage is split into phases, a phase into tasks (one shard each). A task writes its outputs atomically,
then `execute_task` records its completion; a task with a completion record never runs again. Phases
marked sequential (ingest streams its inputs once) run in one process, committing each task as the
stream reaches it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from synthvlm import fsio, schema
from synthvlm.config import RunConfig
from synthvlm.errors import UserError

if TYPE_CHECKING:
    from synthvlm.executors import Executor

EXTERNAL_OUTPUTS = "external-outputs.json"
"""Per stage: the folders it writes outside the run directory, as absolute paths or URLs."""


@dataclass(frozen=True)
class Task:
    """One shard of one phase. `payload` is JSON-able and fully describes the shard's input."""

    phase: str
    index: int
    payload: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.phase}-{self.index:05d}"


@dataclass
class TaskStats:
    """What a task did: `n_in == kept + sum(dropped.values())`, plus free-form numeric extras."""

    n_in: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "in": self.n_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "extra": dict(sorted(self.extra.items())),
        }


class Stage(ABC):
    """Maps the shards of the stage before it to shards of its own. Picklable; loads models lazily."""

    name: ClassVar[str]
    upstream: ClassVar[tuple[str, ...]] = ()
    sequential_phases: ClassVar[frozenset[str]] = frozenset()
    unit: ClassVar[str] = "rows"
    uses_model: ClassVar[bool] = False  # a model stage runs on long-lived workers that load it once

    def __init__(self, run_dir: str | fsio.RunPath, config: RunConfig) -> None:
        self.run_dir = fsio.run_path(run_dir)
        self.config = config

    # -- what subclasses define -------------------------------------------------------------------
    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The config that determines this stage's outputs (goes into its fingerprint)."""

    @abstractmethod
    def phases(self) -> list[str]:
        """Phase names, in order."""

    def tasks(self, phase: str) -> list[Task]:
        """The tasks of a (non-sequential) phase; called on the driver after earlier phases finished."""
        raise NotImplementedError

    def run_task(self, task: Task) -> TaskStats:
        """Compute one task and write its outputs atomically (worker side)."""
        raise NotImplementedError

    def run_sequential(self, phase: str, done: set[int]) -> Iterator[tuple[Task, TaskStats | None]]:
        """Stream a sequential phase: yield each task with its stats, or None if it was already done."""
        raise NotImplementedError

    # -- layout -----------------------------------------------------------------------------------
    @property
    def dir(self) -> fsio.RunPath:
        return self.run_dir / self.name

    @property
    def models_dir(self) -> Path:
        """Where locally built models go: always a local folder, since loaders read local files."""
        return fsio.local_root(self.run_dir) / "models"

    def external_outputs(self) -> list[fsio.RunPath]:
        """Folders this stage writes outside its own directory (export's `out`); a fresh start replaces
        them and a reset deletes them."""
        return []

    def data_path(self, index: int, folder: str = "data") -> fsio.RunPath:
        return self.dir / folder / f"part-{index:05d}.parquet"

    def done_path(self, task: Task) -> fsio.RunPath:
        return self.dir / "done" / f"{task.name}.json"

    def data_files(self, folder: str = "data") -> list[fsio.RunPath]:
        """This stage's output shards in order."""
        return sorted((self.dir / folder).glob("part-*.parquet"))

    def write_rejected(self, task: Task, rows: list[dict[str, Any]]) -> None:
        """Write the rejected rows of a task (always, even when empty, so shards line up)."""
        full = [{**dict.fromkeys(schema.REJECTED.names), "stage": self.name, **row} for row in rows]
        table = pa.Table.from_pylist(full, schema=schema.REJECTED)
        fsio.write_table(self.dir / "rejected" / f"{task.name}.parquet", table)

    # -- fingerprint ------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        upstream = {}
        for name in self.upstream:
            path = self.run_dir / name / "fingerprint.json"
            upstream[name] = _digest(fsio.read_json(path)) if path.exists() else None
        return {"stage": self.name, "settings": self.settings(), "upstream": upstream}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def execute_task(stage: Stage, task: Task) -> TaskStats | None:
    """Run one task unless it is already complete, then record its completion. Returns None if skipped.

    This is the whole of what a worker does; every executor calls it, so outputs are identical whoever
    runs them.
    """
    done = stage.done_path(task)
    if done.exists():
        return None
    stats = stage.run_task(task)
    commit(stage, task, stats)
    return stats


def commit(stage: Stage, task: Task, stats: TaskStats) -> None:
    """Record a task as complete; its outputs must already be in place."""
    dropped = sum(stats.dropped.values())
    assert stats.n_in == stats.kept + dropped, f"{stage.name} {task.name}: in != kept + dropped ({stats})"
    fsio.write_json(stage.done_path(task), stats.to_json())


def completed(stage: Stage, phase: str) -> set[int]:
    """Indices of the completed tasks of a phase."""
    folder = stage.dir / "done"
    return {int(p.stem.rsplit("-", 1)[1]) for p in folder.glob(f"{phase}-[0-9]*.json")}


# -- driver ---------------------------------------------------------------------------------------


def is_complete(run_dir: fsio.RunPath, name: str) -> bool:
    return (run_dir / name / "complete.json").exists()


def needs_first(run_dir: fsio.RunPath, name: str, needed: str) -> UserError:
    """The error for running a stage before a stage it reads is complete."""
    return UserError(f"stage '{name}' needs '{needed}' first: run `synthvlm {needed} --run {run_dir}`")


def check_fingerprint(stage: Stage, *, record: bool = True) -> None:
    """Refuse to continue a stage whose existing outputs were made with another config.

    With `record`, the current fingerprint is then written for the outputs about to be made.
    """
    path = stage.dir / "fingerprint.json"
    current = stage.fingerprint()
    if path.exists():
        previous = fsio.read_json(path)
        if previous == current:
            return
        has_work = any((stage.dir / "done").glob("*.json"))
        if has_work:
            changed = sorted(_changed_keys(previous, current))
            raise UserError(
                f"stage '{stage.name}' in {stage.run_dir} was run with a different config "
                f"(changed: {', '.join(changed)}); rerun with --from {stage.name} to recompute it "
                "and everything after it"
            )
    if record:
        fsio.write_json(path, current)


def _changed_keys(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _changed_keys(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip(".") or "(all)"


def run_stage(stage: Stage, executor: Executor) -> dict[str, Any]:
    """Run every pending task of a stage, phase by phase; return its funnel. A finished stage does no work."""
    for name in stage.upstream:
        if not is_complete(stage.run_dir, name):
            raise needs_first(stage.run_dir, stage.name, name)
    check_fingerprint(stage)
    fsio.write_json(stage.dir / "phases.json", stage.phases())
    external = stage.external_outputs()
    fsio.write_json(stage.dir / EXTERNAL_OUTPUTS, [fsio.absolute(p) for p in external])
    if not any((stage.dir / "done").glob("*.json")):  # a fresh start: nothing outside is ours to keep
        for path in external:
            fsio.remove_tree(path)
    fsio.remove_stale_temps(stage.dir)  # left by a killed worker; never part of any output
    if is_complete(stage.run_dir, stage.name):
        return funnel(stage.run_dir, stage.name)
    for phase in stage.phases():
        if phase in stage.sequential_phases:
            done = completed(stage, phase)
            count = 0
            for task, stats in stage.run_sequential(phase, done):
                count += 1
                if stats is not None:
                    commit(stage, task, stats)
            fsio.write_json(stage.dir / "plan" / f"{phase}.json", {"tasks": count})
            continue
        tasks = stage.tasks(phase)
        fsio.write_json(stage.dir / "plan" / f"{phase}.json", {"tasks": len(tasks)})
        done = completed(stage, phase)
        executor.map(stage, [t for t in tasks if t.index not in done])
        missing = {t.index for t in tasks} - completed(stage, phase)
        if missing:
            raise RuntimeError(f"{stage.name}/{phase}: tasks {sorted(missing)[:10]} did not complete")
    result = funnel(stage.run_dir, stage.name)
    fsio.write_json(stage.dir / "complete.json", result)
    return result


def reset_stages(run_dir: fsio.RunPath, names: Sequence[str]) -> None:
    """Delete the outputs of these stages so they recompute, including those outside the run."""
    for name in names:
        listing = run_dir / name / EXTERNAL_OUTPUTS
        if listing.exists():
            for url in fsio.read_json(listing):
                fsio.remove_tree(fsio.run_path(url))
        fsio.remove_tree(run_dir / name)


def funnel(run_dir: fsio.RunPath, name: str) -> dict[str, Any]:
    """A stage's accounting from its completion records: in, kept, dropped by reason, progress."""
    folder = run_dir / name
    plans = {p.stem: fsio.read_json(p)["tasks"] for p in sorted((folder / "plan").glob("*.json"))}
    records: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((folder / "done").glob("*.json")):
        records.setdefault(path.stem.rsplit("-", 1)[0], []).append(fsio.read_json(path))
    phase_order = (
        fsio.read_json(folder / "phases.json") if (folder / "phases.json").exists() else list(records)
    )
    dropped: dict[str, int] = {}
    extra: dict[str, float] = {}
    for recs in records.values():
        for rec in recs:
            for reason, n in rec["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + n
            for key, value in rec["extra"].items():
                extra[key] = extra.get(key, 0) + value
    present = [p for p in phase_order if p in records]
    n_in = sum(r["in"] for r in records[present[0]]) if present else 0
    kept = sum(r["kept"] for r in records[present[-1]]) if present else 0
    total = sum(plans.get(p, 0) for p in phase_order)
    done = sum(len(records.get(p, [])) for p in phase_order)
    return {
        "in": n_in,
        "kept": kept,
        "dropped": dict(sorted(dropped.items())),
        "extra": dict(sorted(extra.items())),
        "tasks_done": done,
        "tasks_total": total,
        "complete": (folder / "complete.json").exists(),
    }
