"""Tiny random-weight PixArt-Σ pipeline (T5 text encoder, PixArtTransformer2DModel), built locally.

The transformer's `sample_size` is PixArt-Σ 1024's 128 (the 1024 px aspect-ratio bins, 1024 px by
default) and it predicts a learned variance like the real one (twice the latent channels out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthvlm.models.builtin.pipeline_parts import build_pipeline, kl_vae, seeded_module, t5_encoder
from synthvlm.models.builtin.tokenizers import t5_tokenizer

_T5_WIDTH = 32


def _components() -> dict[str, Any]:
    from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel

    tokenizer = t5_tokenizer()
    transformer = seeded_module(
        lambda: PixArtTransformer2DModel(
            sample_size=128,
            num_layers=2,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            caption_channels=_T5_WIDTH,
            in_channels=4,
            cross_attention_dim=24,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            # PixArt-alpha 1024 took resolution and aspect-ratio inputs; PixArt-Sigma does not (and its
            # pipeline passes none), but sample_size 128 would switch them on by default.
            use_additional_conditions=False,
        )
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": t5_encoder(tokenizer, d_model=_T5_WIDTH),
        "vae": kl_vae(latent_channels=4, scaling_factor=0.13025),
        "transformer": transformer,
        "scheduler": DPMSolverMultistepScheduler(),
    }


def build_tiny_pixart_sigma(path: str | Path) -> Path:
    """Write a tiny random-weight PixArtSigmaPipeline to `path` (kept if already complete)."""

    def make(scratch: Path) -> Any:
        from diffusers import PixArtSigmaPipeline

        return PixArtSigmaPipeline(**_components())

    return build_pipeline(path, make)
