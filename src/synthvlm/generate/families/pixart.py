"""PixArt-Σ: a T5-XXL text encoder and a DiT with cross-attention, classifier-free guidance.

The pipeline lower-cases and strips each prompt (caption cleaning, which needs optional packages, stays
off so the text does not depend on what is installed) and keeps `max_sequence_length` T5 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthvlm.generate.families.base import Family


class PixArtSigma(Family):
    name = "pixart-sigma"
    title = "PixArt-Σ"
    pipelines = ("PixArtSigmaPipeline",)
    size_multiple = 16  # the VAE's 8 x the transformer's patch of 2 (the pipeline only checks 8, then fails)
    max_sequence_length = 300
    fuses_qkv = True
    fixed_arguments = {"use_resolution_binning": False, "clean_caption": False}
    tiny = "tiny-pixart-sigma"

    def encoded_texts(self, pipe: Any, prompts: Sequence[str]) -> list[str]:
        return pipe._text_preprocessing(list(prompts), clean_caption=False)
