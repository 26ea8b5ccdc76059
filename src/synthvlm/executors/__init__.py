"""Executors decide where `execute_task` runs, never what it computes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from synthvlm.config import RunConfig
from synthvlm.core.stage import Stage, Task
from synthvlm.executors.local import LocalExecutor
from synthvlm.executors.ray import RayExecutor


class Executor(Protocol):
    """Runs the given pending tasks of one phase of a stage; returns when all are committed."""

    def map(self, stage: Stage, tasks: Sequence[Task]) -> None: ...


EXECUTORS: dict[str, type] = {"local": LocalExecutor, "ray": RayExecutor}
"""Registered executors by name; each is built by its `from_config(config, progress=...)`."""


def make_executor(name: str, *, config: RunConfig | None = None, progress: bool = True) -> Executor:
    """Build an executor by name; unknown names raise ValueError listing the valid ones."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid: {sorted(EXECUTORS)}")
    return EXECUTORS[name].from_config(config or RunConfig(), progress=progress)
