"""Qwen-Image: a Qwen2.5-VL text encoder reading the prompt inside a chat template, an MMDiT transformer.

`guidance` is the classifier-free guidance scale, passed as `true_cfg_scale` (the pipeline's `guidance_scale`
is for guidance-distilled checkpoints); the pipeline turns guidance on only when a negative prompt is given,
so one (empty by default) always is while guidance is above 1. The template's first 34 tokens are dropped
after encoding and the rest is cut to `max_sequence_length`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthvlm.generate.families.base import Family, Settings


class QwenImage(Family):
    name = "qwen-image"
    title = "Qwen-Image"
    pipelines = ("QwenImagePipeline",)
    vae_class = "AutoencoderKLQwenImage"
    guidance = "true-cfg"
    max_sequence_length = 1024
    tiny = "tiny-qwen-image"

    def encoded_texts(self, pipe: Any, prompts: Sequence[str]) -> list[str]:
        return [pipe.prompt_template_encode.format(p) for p in prompts]

    def token_cap(self, pipe: Any, gen: Settings) -> int:
        return self.sequence_length(pipe, gen) + pipe.prompt_template_encode_start_idx
