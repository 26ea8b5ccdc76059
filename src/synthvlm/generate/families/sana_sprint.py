"""SANA-Sprint: SANA distilled to one to four steps (sCM); guidance is embedded (the transformer reads it as
an input) and there is no negative prompt. Prompts are encoded as SANA encodes them."""

from __future__ import annotations

from synthvlm.generate.families.sana import Sana


class SanaSprint(Sana):
    name = "sana-sprint"
    title = "SANA-Sprint"
    pipelines = ("SanaSprintPipeline",)
    guidance = "embedded"
    negative_prompt = False
    tiny = "tiny-sana-sprint"
