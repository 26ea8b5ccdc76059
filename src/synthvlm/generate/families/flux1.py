"""FLUX.1 (schnell, dev): CLIP for a pooled embedding, T5-XXL for the sequence, a rectified-flow transformer.

`guidance` is embedded guidance: dev's transformer reads it as an input; schnell, distilled without a
guidance embedding, ignores it (its card says 0). Real classifier-free guidance, with a negative prompt, is
the separate `true_cfg` scale (on above 1, at twice the cost per step).
"""

from __future__ import annotations

from typing import Any

from synthvlm.generate.families.base import Family


class Flux1(Family):
    name = "flux1"
    title = "FLUX.1"
    pipelines = ("FluxPipeline",)
    guidance = "embedded"
    true_cfg = True
    max_sequence_length = 512
    fuses_qkv = True
    tiny = "tiny-flux1"

    def sequence_tokenizer(self, pipe: Any) -> Any:
        return pipe.tokenizer_2  # T5; CLIP only pools the first 77 tokens
