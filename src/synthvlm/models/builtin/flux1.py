"""Tiny random-weight FLUX.1 pipeline (CLIP + T5 text encoders, FluxTransformer2DModel), built locally.

Schnell-like: the transformer has no guidance embedding, so `guidance_scale` does nothing and the
scheduler uses FLUX.1-schnell's fixed shift instead of dev's resolution-dependent one.
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

_TEXT_HIDDEN = 32  # CLIP hidden (the pooled projection) and T5 width (the joint attention)


def _components(scratch: Path) -> dict[str, Any]:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel

    tokenizer = clip_tokenizer(scratch, "tokenizer")
    tokenizer_2 = t5_tokenizer()
    transformer = seeded_module(
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=4,  # the VAE's 1 latent channel packed 2 x 2
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_TEXT_HIDDEN,
            pooled_projection_dim=_TEXT_HIDDEN,
            guidance_embeds=False,
            axes_dims_rope=(4, 4, 8),
        )
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
        "vae": kl_vae(latent_channels=1, scaling_factor=0.3611, shift_factor=0.1159),
        "text_encoder": seeded_module(
            lambda: CLIPTextModel(clip_text_config(tokenizer, hidden=_TEXT_HIDDEN))
        ),
        "tokenizer": tokenizer,
        "text_encoder_2": t5_encoder(tokenizer_2, d_model=_TEXT_HIDDEN),
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
        "image_encoder": None,
        "feature_extractor": None,
    }


def build_tiny_flux1(path: str | Path) -> Path:
    """Write a tiny random-weight FluxPipeline (schnell-like) to `path` (kept if already complete)."""

    def make(scratch: Path) -> Any:
        from diffusers import FluxPipeline

        return FluxPipeline(**_components(scratch))

    return build_pipeline(path, make)
