"""SANA: a Gemma-2 text encoder behind a long "complex human instruction", a linear-attention transformer
and a 32x deep-compression autoencoder (DC-AE).

The pipeline lower-cases and strips each prompt and prepends the instruction; it keeps the instruction's
tokens plus `max_sequence_length` - 2, so a prompt is cut where that sum is exceeded. Gemma-2 and DC-AE
overflow in float16 (the model card keeps both in bfloat16 beside a float16 transformer).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from synthvlm.generate.families.base import Family, Settings


class Sana(Family):
    name = "sana"
    title = "SANA"
    pipelines = ("SanaPipeline",)
    vae_class = "AutoencoderDC"
    size_multiple = 32
    max_sequence_length = 300
    fixed_arguments = {"use_resolution_binning": False, "clean_caption": False}
    tiny = "tiny-sana"

    def dtypes(self, dtype: str) -> str | dict[str, str]:
        if dtype != "float16":
            return dtype
        return {"default": dtype, "text_encoder": "bfloat16", "vae": "bfloat16"}

    def _instruction(self, pipe: Any) -> str:
        default = inspect.signature(type(pipe).__call__).parameters["complex_human_instruction"].default
        return "\n".join(default)

    def encoded_texts(self, pipe: Any, prompts: Sequence[str]) -> list[str]:
        instruction = self._instruction(pipe)
        return [instruction + p for p in pipe._text_preprocessing(list(prompts), clean_caption=False)]

    def token_cap(self, pipe: Any, gen: Settings) -> int:
        return len(pipe.tokenizer.encode(self._instruction(pipe))) + self.sequence_length(pipe, gen) - 2
