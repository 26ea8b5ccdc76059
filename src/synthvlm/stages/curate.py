"""Curate: rule filters, optional perplexity / alignment, exact then near dedup, decontamination, LLM judge.

The stage only sequences the configured steps (`synthvlm.steps.STEPS`, cheapest first); what a step keeps
is the step's own business. Each step is one phase reading the shards the step before it wrote and writing
its own (`data/` for the last step); a planned step (the dedups) first plans over the whole pool in one
`<name>-plan` task. Every dropped caption is a rejected row of its phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from synthvlm.core import fsio
from synthvlm.core.needs import Need, Note
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.steps import STEPS
from synthvlm.steps.base import CurateStep

if TYPE_CHECKING:
    from synthvlm.config import CurateConfig, RunConfig

_PLAN = "-plan"
PAPER_MODEL_STEPS = ("perplexity", "alignment", "judge")
"""The SynthVLM paper's model-based curation steps (KenLM perplexity, CLIP/BLIP alignment, LLaMA3 judge):
`curate.recipe: synthvlm` runs only its rule filters, these run when configured."""


def _recipe_note(cur: CurateConfig) -> list[Note]:
    """Which of the paper's model steps the synthvlm recipe runs here, and how to add the others."""
    if cur.recipe != "synthvlm":
        return []
    configured = [s for s in PAPER_MODEL_STEPS if getattr(cur, s) is not None]
    skipped = [s for s in PAPER_MODEL_STEPS if s not in configured]
    note = (
        "curate.recipe synthvlm runs the paper's rule filters; of the paper's model steps, "
        f"configured: {', '.join(configured) or 'none'}; skipped: {', '.join(skipped) or 'none'}"
    )
    if skipped:
        note += f" (set {', '.join('curate.' + s for s in skipped)} to run them)"
    return [Note(note)]


class CurateStage(Stage):
    """Phases: `filter`, then per configured step `perplexity`, `alignment`, `dedup-plan` + `dedup`,
    `neardup-plan` + `neardup`, `decontam`, `judge`."""

    name = "curate"
    upstream = ("ingest",)
    unit = "captions"

    def steps(self) -> list[CurateStep]:
        """The configured steps in recipe order (the rule filters always run)."""
        configured = (cls.from_config(self.config.curate, run_dir=self.run_dir) for cls in STEPS.values())
        return [step for step in configured if step is not None]

    @classmethod
    def needs(cls, config: RunConfig) -> list[Need]:
        out = [need for step in STEPS.values() for need in step.needs(config.curate)]
        return out + _recipe_note(config.curate)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for step in self.steps():
            out.update(step.settings())
        return out

    def phases(self) -> list[str]:
        phases: list[str] = []
        for step in self.steps():
            phases += [step.name + _PLAN, step.name] if step.planned else [step.name]
        return phases

    def tasks(self, phase: str) -> list[Task]:
        n_shards = len(self.upstream_dir("ingest").shards())
        if phase.endswith(_PLAN):
            return [Task(phase, 0, (n_shards,))]
        return [Task(phase, i) for i in range(n_shards)]

    def run_task(self, task: Task) -> TaskStats:
        steps = self.steps()
        names = [step.name for step in steps]
        k = names.index(task.phase.removesuffix(_PLAN))
        if task.phase.endswith(_PLAN):
            return self._plan(task, steps, k)
        return self._apply(task, steps, k)

    def _input(self, steps: list[CurateStep], k: int, index: int) -> fsio.RunPath:
        """Shard `index` as step `k` reads it: ingest's output for the first step, else the step before's."""
        if k == 0:
            return self.upstream_dir("ingest").shard(index)
        return self._output(steps, k - 1, index)

    def _output(self, steps: list[CurateStep], k: int, index: int) -> fsio.RunPath:
        return self.layout.shard(index, "data" if k == len(steps) - 1 else steps[k].folder)

    def _plan(self, task: Task, steps: list[CurateStep], k: int) -> TaskStats:
        """Plan a step over the whole pool in one task: one plan shard per input shard."""
        (n_shards,) = task.payload
        step = steps[k]
        columns = list(step.plan_columns)
        tables = [fsio.read_table(self._input(steps, k, i), columns=columns) for i in range(n_shards)]
        for i, plan in enumerate(step.plan(tables)):
            fsio.write_table(self.layout.shard(i, task.phase), plan)
        return TaskStats(0, 0)

    def _apply(self, task: Task, steps: list[CurateStep], k: int) -> TaskStats:
        """Let step `k` decide on one shard; write the kept rows and a rejected row per dropped one."""
        step = steps[k]
        table = fsio.read_table(self._input(steps, k, task.index))
        plan = fsio.read_table(self.layout.shard(task.index, task.phase + _PLAN)) if step.planned else None
        decision = step.decide(table, plan)
        assert len(decision.keep) == table.num_rows, f"{step.name}: one keep flag per row"
        rows = table.select(["id", "caption", "source_file", "source_index"]).to_pylist()
        rejected = [
            {**rows[d.row], "reason": d.reason, "value": d.value, "detail": d.detail} for d in decision.drops
        ]
        kept = step.finish(table.filter(pa.array(decision.keep, type=pa.bool_())))
        fsio.write_table(self._output(steps, k, task.index), kept)
        self.write_rejected(task, rejected)
        dropped: dict[str, int] = {}
        for drop in decision.drops:
            dropped[drop.reason] = dropped.get(drop.reason, 0) + 1
        return TaskStats(table.num_rows, kept.num_rows, dropped)
