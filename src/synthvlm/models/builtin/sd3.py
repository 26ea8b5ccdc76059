"""Tiny random-weight Stable Diffusion 3 pipeline (two CLIPs + T5, SD3Transformer2DModel), built locally.

Shaped like SD3.5: RMS-normed attention, patch size 2 (height and width a multiple of 16), and the two
CLIP widths adding up to the T5 width, so the pipeline pads (never crops) the CLIP embeddings to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthvlm.models.builtin.pipeline_parts import (
    build_pipeline,
    clip_text_config,
    kl_vae,
    seeded_module,
    t5_encoder,
)
from synthvlm.models.builtin.tokenizers import clip_tokenizer, t5_tokenizer

_CLIP_HIDDEN = 16
_T5_WIDTH = 2 * _CLIP_HIDDEN


def _components(scratch: Path) -> dict[str, Any]:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection

    tokenizer = clip_tokenizer(scratch, "tokenizer")
    tokenizer_2 = clip_tokenizer(scratch, "tokenizer_2")
    tokenizer_3 = t5_tokenizer()
    transformer = seeded_module(
        lambda: SD3Transformer2DModel(
            sample_size=128,  # the default 1024 px
            patch_size=2,
            in_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=_T5_WIDTH,
            pooled_projection_dim=2 * _CLIP_HIDDEN,  # both CLIPs' pooled projections side by side
            out_channels=4,
            qk_norm="rms_norm",
        )
    )
    return {
        "transformer": transformer,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "vae": kl_vae(latent_channels=4, scaling_factor=1.5305, shift_factor=0.0609),
        "text_encoder": seeded_module(
            lambda: CLIPTextModelWithProjection(clip_text_config(tokenizer, hidden=_CLIP_HIDDEN))
        ),
        "tokenizer": tokenizer,
        "text_encoder_2": seeded_module(
            lambda: CLIPTextModelWithProjection(clip_text_config(tokenizer_2, hidden=_CLIP_HIDDEN))
        ),
        "tokenizer_2": tokenizer_2,
        "text_encoder_3": t5_encoder(tokenizer_3, d_model=_T5_WIDTH),
        "tokenizer_3": tokenizer_3,
        "image_encoder": None,
        "feature_extractor": None,
    }


def build_tiny_sd3(path: str | Path) -> Path:
    """Write a tiny random-weight StableDiffusion3Pipeline to `path` (kept if already complete)."""

    def make(scratch: Path) -> Any:
        from diffusers import StableDiffusion3Pipeline

        return StableDiffusion3Pipeline(**_components(scratch))

    return build_pipeline(path, make)
