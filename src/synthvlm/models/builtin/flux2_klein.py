"""Tiny random-weight FLUX.2 [klein] pipeline (a Qwen3 text encoder, Flux2Transformer2DModel), built locally.

`Flux2KleinPipeline` stacks the text encoder's hidden states at `text_encoder_out_layers` (9, 18, 27 by
default) as the prompt embedding, so the tiny Qwen3 has 28 layers: the default call works, and layer 27
is an inner layer as in the real 36-layer Qwen3-4B. The transformer's joint attention width is therefore
3 x the text hidden size. Like FLUX.2-klein-4B the pipeline is marked step-distilled (`is_distilled`), so
`guidance_scale` is ignored and no negative prompt is encoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthvlm.models.builtin.pipeline_parts import build_pipeline, kl_vae, qwen3_config, seeded_module
from synthvlm.models.builtin.tokenizers import QWEN3_CHAT_TEMPLATE, QWEN3_THINK, qwen_tokenizer

OUT_LAYERS = (9, 18, 27)
"""Flux2KleinPipeline's default `text_encoder_out_layers`."""


def _components() -> dict[str, Any]:
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel
    from transformers import Qwen3ForCausalLM

    tokenizer = qwen_tokenizer(added=QWEN3_THINK, chat_template=QWEN3_CHAT_TEMPLATE)
    config = qwen3_config(tokenizer, layers=max(OUT_LAYERS) + 1)
    transformer = seeded_module(
        lambda: Flux2Transformer2DModel(
            patch_size=1,
            in_channels=4,  # the VAE's 1 latent channel patchified 2 x 2
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=len(OUT_LAYERS) * config.hidden_size,
            timestep_guidance_channels=256,
            axes_dims_rope=(4, 4, 4, 4),
            guidance_embeds=False,
        )
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": kl_vae(latent_channels=1, cls=AutoencoderKLFlux2),
        "text_encoder": seeded_module(lambda: Qwen3ForCausalLM(config)),
        "tokenizer": tokenizer,
        "transformer": transformer,
        "is_distilled": True,
    }


def build_tiny_flux2_klein(path: str | Path) -> Path:
    """Write a tiny random-weight Flux2KleinPipeline to `path` (kept if already complete)."""

    def make(scratch: Path) -> Any:
        from diffusers import Flux2KleinPipeline

        return Flux2KleinPipeline(**_components())

    return build_pipeline(path, make)
