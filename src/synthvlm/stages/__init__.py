"""The pipeline's stages, registered in order."""

from __future__ import annotations

from synthvlm.core import layout
from synthvlm.core.stage import Stage
from synthvlm.stages.caption import CaptionStage
from synthvlm.stages.curate import CurateStage
from synthvlm.stages.export import ExportStage
from synthvlm.stages.generate import GenerateStage
from synthvlm.stages.ingest import IngestStage
from synthvlm.stages.score import ScoreStage
from synthvlm.stages.select import SelectStage

STAGES: dict[str, type[Stage]] = {
    stage.name: stage
    for stage in (CaptionStage, IngestStage, CurateStage, GenerateStage, ScoreStage, SelectStage, ExportStage)
}
"""Every stage by name, in pipeline order (caption runs only when its inputs are configured)."""

assert tuple(STAGES) == layout.STAGE_ORDER, "a stage class for every stage folder, in pipeline order"

ORDER: list[str] = list(STAGES)
