"""Tiny random-weight SDXL base and refiner, built locally so tests and the offline demo never touch the hub.

The sizes follow diffusers' own SDXL fast tests: the real classes at tiny widths, `torch.manual_seed(0)`
before each component, so two builds write identical bytes and the real `from_pretrained` path loads them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthvlm.models.builtin.clip import build_clip_tokenizer, build_once

_TIME_EMBED_DIM = 8
_TEXT_HIDDEN = 32  # hidden size (and projection size) of both tiny text encoders
_MARKER = "model_index.json"


def _unet(*, cross_attention_dim: int, time_ids: int) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=_TIME_EMBED_DIM,
        transformer_layers_per_block=(1, 2),
        # Pooled text embedding of text_encoder_2 plus one time embedding per add_time_id.
        projection_class_embeddings_input_dim=time_ids * _TIME_EMBED_DIM + _TEXT_HIDDEN,
        cross_attention_dim=cross_attention_dim,
    )


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=128,
    )


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )


def _text_config(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        hidden_act="gelu",
        projection_dim=_TEXT_HIDDEN,
        max_position_embeddings=tokenizer.model_max_length,
    )


def _tokenizer(scratch: Path, name: str) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(build_clip_tokenizer(scratch / name))


def _base_components(scratch: Path) -> dict[str, Any]:
    import torch
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _tokenizer(scratch, "tokenizer")
    tokenizer_2 = _tokenizer(scratch, "tokenizer_2")
    torch.manual_seed(0)
    # Base add_time_ids: original size (2) + crop top-left (2) + target size (2).
    unet = _unet(cross_attention_dim=2 * _TEXT_HIDDEN, time_ids=6)
    torch.manual_seed(0)
    vae = _vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2))
    return {
        "unet": unet,
        "scheduler": _scheduler(),
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer_2,
    }


def _refiner_components(scratch: Path) -> dict[str, Any]:
    import torch
    from transformers import CLIPTextModelWithProjection

    tokenizer_2 = _tokenizer(scratch, "tokenizer_2")
    torch.manual_seed(0)
    # Refiner add_time_ids: original size (2) + crop top-left (2) + aesthetic score (1).
    unet = _unet(cross_attention_dim=_TEXT_HIDDEN, time_ids=5)
    torch.manual_seed(0)
    vae = _vae()
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2))
    return {
        "unet": unet,
        "scheduler": _scheduler(),
        "vae": vae,
        "text_encoder": None,
        "tokenizer": None,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer_2,
        "requires_aesthetics_score": True,
    }


def _build(path: str | Path, make: Callable[[Path], Any]) -> Path:
    """Save the pipeline `make(scratch)` returns as `path`, once; tokenizers are built in `scratch`."""

    def write(out: Path) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            make(Path(scratch)).save_pretrained(out, safe_serialization=True)

    return build_once(path, write, marker=_MARKER)


def build_tiny_sdxl(path: str | Path) -> Path:
    """Write a tiny random-weight StableDiffusionXLPipeline to `path` (kept if already complete)."""

    def make(scratch: Path) -> Any:
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(**_base_components(scratch))

    return _build(path, make)


def build_tiny_sdxl_refiner(path: str | Path) -> Path:
    """Write a tiny random-weight SDXL refiner (StableDiffusionXLImg2ImgPipeline) to `path`."""

    def make(scratch: Path) -> Any:
        from diffusers import StableDiffusionXLImg2ImgPipeline

        return StableDiffusionXLImg2ImgPipeline(**_refiner_components(scratch))

    return _build(path, make)
