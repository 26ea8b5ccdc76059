"""The stage contract: a stage maps the shards of the stages it reads to shards of its own.

A stage is split into phases, a phase into tasks (one shard each). A task writes its outputs atomically;
the driver (`synthvlm.core.driver`) then records its completion. Phases marked sequential (ingest streams
its inputs once) run in one process, committing each task as the stream reaches it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pyarrow as pa

from synthvlm.core import fsio, layout, schema
from synthvlm.core.needs import Need

if TYPE_CHECKING:
    from synthvlm.config import RunConfig


@dataclass(frozen=True)
class Task:
    """One shard of one phase. `payload` is JSON-able and fully describes the shard's input."""

    phase: str
    index: int
    payload: tuple[Any, ...] = ()
    group: str = ""
    """Tasks of one group share what their workers load (a generator's pipeline): executors run a group's
    tasks together, on workers of their own."""

    @property
    def name(self) -> str:
        return layout.task_name(self.phase, self.index)


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
        self.config = config.resolved()  # stages run and fingerprint the explicit view

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

    @classmethod
    def needs(cls, config: RunConfig) -> list[Need]:
        """What the stage will need to run `config` (resolved): models, inputs, extras, endpoints,
        destinations. `preflight` checks every declaration before any stage does work."""
        return []

    @classmethod
    def enabled(cls, config: RunConfig) -> bool:
        """Whether a whole-pipeline run includes this stage (optional stages say no unless configured)."""
        return True

    def external_outputs(self) -> list[fsio.RunPath]:
        """Folders this stage writes outside its own directory (export's `out`); a fresh start replaces
        them and a reset deletes them."""
        return []

    # -- layout -----------------------------------------------------------------------------------
    @property
    def layout(self) -> layout.StageDir:
        """This stage's folder in the run."""
        return layout.StageDir(self.run_dir, self.name)

    def upstream_dir(self, name: str) -> layout.StageDir:
        """The folder of a stage this one reads."""
        return layout.StageDir(self.run_dir, name)

    @property
    def models_dir(self) -> Path:
        """Where models built from `builtin:` names are kept for this run."""
        return layout.models_dir(self.run_dir)

    def write_rejected(self, task: Task, rows: list[dict[str, Any]]) -> None:
        """Write the rejected rows of a task (always, even when empty, so shards line up)."""
        self.write_rejected_table(task, rejected_table(self.name, rows))

    def write_rejected_table(self, task: Task, table: pa.Table) -> None:
        """Write a task's rejected rows already built as a REJECTED table."""
        fsio.write_table(self.layout.rejected(task.name), table)


def rejected_table(stage: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rejected rows (`id`, `reason`, and any other REJECTED columns) of a stage as a REJECTED table."""
    full = [{**dict.fromkeys(schema.REJECTED.names), "stage": stage, **row} for row in rows]
    return pa.Table.from_pylist(full, schema=schema.REJECTED)


class Executor(Protocol):
    """Runs the given pending tasks of one phase of a stage; returns when all are committed. It decides
    where `driver.execute_task(stage, task)` runs, never what it computes (`synthvlm.executors`)."""

    progress: bool
    """Whether the phases it runs show progress (the driver's sequential phases follow it too)."""

    def map(self, stage: Stage, tasks: Sequence[Task]) -> None: ...
