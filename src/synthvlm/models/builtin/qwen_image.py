"""Tiny random-weight Qwen-Image pipeline (Qwen2.5-VL text encoder, QwenImageTransformer2DModel).

QwenImagePipeline wraps each prompt in a chat template with a fixed system prompt and drops the first 34
tokens of the result (`prompt_template_encode_start_idx`), which must be exactly the system part: the
tiny tokenizer has that prompt's words as single tokens, so the template splits where the real one
does. The VAE keeps Qwen-Image's three down-sampling stages (`vae_scale_factor` 8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthvlm.models.builtin.pipeline_parts import build_pipeline, seeded_module
from synthvlm.models.builtin.tokenizers import QWEN_VL_SPECIALS, qwen_tokenizer

_TEXT_HIDDEN = 16
_Z_DIM = 4


def _text_encoder(tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_VL_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": _TEXT_HIDDEN,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    return seeded_module(lambda: Qwen2_5_VLForConditionalGeneration(config))


def _components() -> dict[str, Any]:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageTransformer2DModel,
    )

    tokenizer = qwen_tokenizer(extra_specials=QWEN_VL_SPECIALS)
    transformer = seeded_module(
        lambda: QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=4 * _Z_DIM,  # latents packed 2 x 2
            out_channels=_Z_DIM,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=_TEXT_HIDDEN,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        )
    )
    vae = seeded_module(
        lambda: AutoencoderKLQwenImage(
            base_dim=4,  # diffusers' tests use 24: with 3-D convolutions that VAE alone is 22 MB
            z_dim=_Z_DIM,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            latents_mean=[0.0] * _Z_DIM,
            latents_std=[1.0] * _Z_DIM,
        )
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae,
        "text_encoder": _text_encoder(tokenizer),
        "tokenizer": tokenizer,
        "transformer": transformer,
    }


def build_tiny_qwen_image(path: str | Path) -> Path:
    """Write a tiny random-weight QwenImagePipeline to `path` (kept if already complete)."""

    def make(scratch: Path) -> Any:
        from diffusers import QwenImagePipeline

        return QwenImagePipeline(**_components())

    return build_pipeline(path, make)
