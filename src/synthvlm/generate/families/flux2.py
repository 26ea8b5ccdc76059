"""FLUX.2 [klein]: one Qwen3 text encoder (three of its hidden layers stacked), a rectified-flow transformer.

The pipeline takes no negative prompt. `guidance` is classifier-free guidance above 1 for the base
checkpoints; the step-distilled ones (klein 4B and 9B, `is_distilled` in their pipeline config) ignore it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthvlm.generate.families.base import Family, chat_texts


class Flux2(Family):
    name = "flux2-klein"
    title = "FLUX.2 [klein]"
    pipelines = ("Flux2KleinPipeline",)
    vae_class = "AutoencoderKLFlux2"
    guidance = "cfg-unless-distilled"
    negative_prompt = False
    max_sequence_length = 512
    fuses_qkv = True
    tiny = "tiny-flux2-klein"

    def encoded_texts(self, pipe: Any, prompts: Sequence[str]) -> list[str]:
        return chat_texts(pipe.tokenizer, prompts, enable_thinking=False)
