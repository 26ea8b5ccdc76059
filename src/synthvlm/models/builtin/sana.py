"""Tiny random-weight SANA and SANA-Sprint pipelines (Gemma 2 text encoder, SanaTransformer2DModel, DC-AE).

The DC-AE keeps SANA's six stages, so `vae_scale_factor` is 32 and height and width must be multiples
of 32. The transformer's `sample_size` is the 1024 px models' 32, which selects the 1024 px aspect-ratio
bins: with `use_resolution_binning` left on, the pipelines generate at the nearest bin and resize.
SANA-Sprint's transformer adds the embedded-guidance input and per-head RMS norm of the real 1.6B model,
and runs on the SCM scheduler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthvlm.models.builtin.pipeline_parts import build_pipeline, seeded_module
from synthvlm.models.builtin.tokenizers import gemma_tokenizer

_TEXT_HIDDEN = 8


def _transformer(**sprint: Any) -> Any:
    from diffusers import SanaTransformer2DModel

    return seeded_module(
        lambda: SanaTransformer2DModel(
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            num_attention_heads=2,
            attention_head_dim=4,
            num_cross_attention_heads=2,
            cross_attention_head_dim=4,
            cross_attention_dim=8,
            caption_channels=_TEXT_HIDDEN,
            sample_size=32,
            **sprint,
        )
    )


def _dc_ae() -> Any:
    """A 6-stage AutoencoderDC (32 x compression) of width 8, ResBlocks then EfficientViT blocks."""
    from diffusers import AutoencoderDC

    blocks = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    scales = ((),) * 3 + ((5,),) * 3
    return seeded_module(
        lambda: AutoencoderDC(
            in_channels=3,
            latent_channels=4,
            attention_head_dim=2,
            encoder_block_types=blocks,
            decoder_block_types=blocks,
            encoder_block_out_channels=(8,) * 6,
            decoder_block_out_channels=(8,) * 6,
            encoder_qkv_multiscales=scales,
            decoder_qkv_multiscales=scales,
            encoder_layers_per_block=(1,) * 6,
            decoder_layers_per_block=(1,) * 6,
            downsample_block_type="conv",
            upsample_block_type="interpolate",
            decoder_norm_types="rms_norm",
            decoder_act_fns="silu",
            scaling_factor=0.41407,
        )
    )


def _text(tokenizer: Any) -> Any:
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return seeded_module(lambda: Gemma2Model(config))


def build_tiny_sana(path: str | Path) -> Path:
    """Write a tiny random-weight SanaPipeline (flow DPM-Solver scheduler) to `path`."""

    def make(scratch: Path) -> Any:
        from diffusers import DPMSolverMultistepScheduler, SanaPipeline

        tokenizer = gemma_tokenizer()
        return SanaPipeline(
            tokenizer=tokenizer,
            text_encoder=_text(tokenizer),
            vae=_dc_ae(),
            transformer=_transformer(),
            scheduler=DPMSolverMultistepScheduler(
                flow_shift=3.0, use_flow_sigmas=True, prediction_type="flow_prediction"
            ),
        )

    return build_pipeline(path, make)


def build_tiny_sana_sprint(path: str | Path) -> Path:
    """Write a tiny random-weight SanaSprintPipeline (guidance-embedding transformer, SCM scheduler)."""

    def make(scratch: Path) -> Any:
        from diffusers import SanaSprintPipeline, SCMScheduler

        tokenizer = gemma_tokenizer()
        return SanaSprintPipeline(
            tokenizer=tokenizer,
            text_encoder=_text(tokenizer),
            vae=_dc_ae(),
            transformer=_transformer(
                qk_norm="rms_norm_across_heads",
                guidance_embeds=True,
                guidance_embeds_scale=0.1,
                timestep_scale=1000.0,
            ),
            scheduler=SCMScheduler(),
        )

    return build_pipeline(path, make)
