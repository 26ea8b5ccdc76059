"""Z-Image: a Qwen3 text encoder reading the prompt as a chat turn, a single-stream transformer.

`guidance` is classifier-free guidance, on above 0 (Turbo is distilled to run without it: 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthvlm.generate.families.base import Family, chat_texts


class ZImage(Family):
    name = "z-image"
    title = "Z-Image"
    pipelines = ("ZImagePipeline",)
    guidance = "cfg-above-zero"
    max_sequence_length = 512
    fullgraph = False
    tiny = "tiny-z-image"

    def encoded_texts(self, pipe: Any, prompts: Sequence[str]) -> list[str]:
        return chat_texts(pipe.tokenizer, prompts, enable_thinking=True)
