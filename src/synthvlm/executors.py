"""Executors decide where `execute_task` runs, never what it computes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from synthvlm.config import RunConfig
from synthvlm.ray_executor import RayExecutor
from synthvlm.stage import Stage, Task, execute_task


class Executor(Protocol):
    """Runs the given pending tasks of one phase of a stage; returns when all are committed."""

    def map(self, stage: Stage, tasks: Sequence[Task]) -> None: ...


class LocalExecutor:
    """Runs tasks one after another in this process, with a progress bar per phase."""

    def __init__(self, *, progress: bool = True) -> None:
        self.progress = progress

    @classmethod
    def from_config(cls, config: RunConfig, *, progress: bool = True) -> LocalExecutor:
        """The local executor takes nothing from the config."""
        return cls(progress=progress)

    def map(self, stage: Stage, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        from synthvlm.progress import task_progress

        label = f"{stage.name}/{tasks[0].phase}"
        with task_progress(label, total=len(tasks), unit=stage.unit, enabled=self.progress) as shard_done:
            for task in tasks:
                execute_task(stage, task)
                shard_done()


EXECUTORS: dict[str, type] = {"local": LocalExecutor, "ray": RayExecutor}
"""Registered executors by name; each is built by its `from_config(config, progress=...)`."""


def make_executor(name: str, *, config: RunConfig | None = None, progress: bool = True) -> Executor:
    """Build an executor by name; unknown names raise ValueError listing the valid ones."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid: {sorted(EXECUTORS)}")
    return EXECUTORS[name].from_config(config or RunConfig(), progress=progress)
