"""Tiny random-weight Z-Image pipeline (a Qwen3 text encoder, ZImageTransformer2DModel), built locally.

ZImagePipeline applies the tokenizer's chat template (thinking left on) and reads the text encoder's
second-to-last hidden state, so the tiny Qwen3 carries Qwen3's template and has more than one layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthvlm.models.builtin.pipeline_parts import build_pipeline, kl_vae, qwen3_config, seeded_module
from synthvlm.models.builtin.tokenizers import QWEN3_CHAT_TEMPLATE, QWEN3_THINK, qwen_tokenizer

_LATENT = 16


def _components() -> dict[str, Any]:
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Model

    tokenizer = qwen_tokenizer(added=QWEN3_THINK, chat_template=QWEN3_CHAT_TEMPLATE)
    config = qwen3_config(tokenizer, layers=2)
    transformer = seeded_module(
        lambda: ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=_LATENT,
            dim=32,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            norm_eps=1e-5,
            qk_norm=True,
            cap_feat_dim=config.hidden_size,
            rope_theta=256.0,
            t_scale=1000.0,
            axes_dims=[8, 4, 4],
            axes_lens=[256, 32, 32],
        )
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
        "vae": kl_vae(latent_channels=_LATENT, scaling_factor=0.3611, shift_factor=0.1159),
        "text_encoder": seeded_module(lambda: Qwen3Model(config)),
        "tokenizer": tokenizer,
        "transformer": transformer,
    }


def build_tiny_z_image(path: str | Path) -> Path:
    """Write a tiny random-weight ZImagePipeline to `path` (kept if already complete)."""

    def make(scratch: Path) -> Any:
        from diffusers import ZImagePipeline

        return ZImagePipeline(**_components())

    return build_pipeline(path, make)
