"""Executors decide where `execute_task` runs, never what it computes."""

from __future__ import annotations

from synthvlm.config import RunConfig
from synthvlm.core.stage import Executor
from synthvlm.executors.local import LocalExecutor
from synthvlm.executors.ray import RayExecutor

__all__ = ["EXECUTORS", "Executor", "make_executor"]

EXECUTORS: dict[str, type[LocalExecutor] | type[RayExecutor]] = {"local": LocalExecutor, "ray": RayExecutor}
"""Registered executors by name; each is built by its `from_config(config, progress=...)` and declares
what it needs beyond the stages (`needs()`, for the preflight)."""


def make_executor(name: str, *, config: RunConfig | None = None, progress: bool = True) -> Executor:
    """Build an executor by name; unknown names raise ValueError listing the valid ones."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid: {sorted(EXECUTORS)}")
    return EXECUTORS[name].from_config(config or RunConfig(), progress=progress)
