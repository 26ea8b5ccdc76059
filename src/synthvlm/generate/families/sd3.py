"""Stable Diffusion 3 and 3.5: two CLIP encoders and T5-XXL, an MMDiT transformer, classifier-free guidance.

The denoiser attends to the T5 sequence, so a prompt is cut where T5's `max_sequence_length` cuts it (the
CLIP encoders read only its first 77 tokens, as the pipeline always does); a checkpoint saved without T5
reads the prompt through CLIP alone.
"""

from __future__ import annotations

from typing import Any

from synthvlm.generate.families.base import Family, Settings


class Sd3(Family):
    name = "sd3"
    title = "Stable Diffusion 3 / 3.5"
    pipelines = ("StableDiffusion3Pipeline",)
    max_sequence_length = 512
    tiny = "tiny-sd3"

    def sequence_tokenizer(self, pipe: Any) -> Any:
        return pipe.tokenizer_3 if getattr(pipe, "tokenizer_3", None) is not None else pipe.tokenizer

    def token_cap(self, pipe: Any, gen: Settings) -> int:
        if getattr(pipe, "tokenizer_3", None) is None:
            return pipe.tokenizer.model_max_length
        return self.sequence_length(pipe, gen)
