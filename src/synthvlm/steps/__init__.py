"""Curate steps, one per file, each a `CurateStep` (`steps.base`); the rule filters live in `steps.filters`.

`STEPS` is the recipe's order: cheapest first, the paid LLM judge last. A step runs when the config sets
it up; each one reads the shards the step before it wrote.
"""

from __future__ import annotations

from synthvlm.steps.alignment import AlignmentStep
from synthvlm.steps.base import CurateStep
from synthvlm.steps.decontam import DecontamStep
from synthvlm.steps.dedup import DedupStep
from synthvlm.steps.judge import JudgeStep
from synthvlm.steps.neardup import NearDupStep
from synthvlm.steps.perplexity import PerplexityStep
from synthvlm.steps.rules import RuleFilterStep

STEPS: dict[str, type[CurateStep]] = {
    cls.name: cls
    for cls in (
        RuleFilterStep,
        PerplexityStep,
        AlignmentStep,
        DedupStep,
        NearDupStep,
        DecontamStep,
        JudgeStep,
    )
}
"""Step registry in recipe order: phase name -> class."""
