"""The local executor: tasks one after another in this process, with a progress bar per phase."""

from __future__ import annotations

from collections.abc import Sequence

from synthvlm.config import RunConfig
from synthvlm.core.driver import execute_task
from synthvlm.core.needs import Need
from synthvlm.core.progress import task_progress
from synthvlm.core.stage import Stage, Task


class LocalExecutor:
    """Runs tasks one after another in this process, with a progress bar per phase."""

    def __init__(self, *, progress: bool = True) -> None:
        self.progress = progress

    @classmethod
    def needs(cls) -> list[Need]:
        """Nothing beyond the stages' own needs."""
        return []

    @classmethod
    def from_config(cls, config: RunConfig, *, progress: bool = True) -> LocalExecutor:
        """The local executor takes nothing from the config."""
        return cls(progress=progress)

    def map(self, stage: Stage, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        with task_progress(
            stage.name, tasks[0].phase, total=len(tasks), unit=stage.unit, enabled=self.progress
        ) as shard_done:
            for task in tasks:
                execute_task(stage, task)
                shard_done()
