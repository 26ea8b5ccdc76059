"""Pieces the tiny text-to-image pipelines share: the build-and-save step and the small VAE and text encoders.

Sizes follow diffusers' own pipeline fast tests, with one change the generate stage depends on: the VAEs
keep their family's number of down-sampling stages, so `pipe.vae_scale_factor` (and with it the multiple
that height and width must be, and the latent grid) is the real model's, not the tests' 1 or 2.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthvlm.models.builtin.clip import build_once

MARKER = "model_index.json"
"""Marks a finished pipeline folder (`build_once` only ever renames a complete build into place)."""


def build_pipeline(path: str | Path, make: Callable[[Path], Any]) -> Path:
    """Save the pipeline `make(scratch)` returns as `path`, once; tokenizers are built in `scratch`.

    `make` seeds torch before each component on a forked RNG, so the caller's random stream goes on
    as if nothing had been built.
    """

    def write(out: Path) -> None:
        import torch

        with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(devices=[]):
            make(Path(scratch)).save_pretrained(out, safe_serialization=True)

    return build_once(path, write, marker=MARKER)


def seeded_module(factory: Callable[[], Any]) -> Any:
    """`factory()` right after `torch.manual_seed(0)`, as diffusers' tests build each component."""
    import torch

    torch.manual_seed(0)
    return factory().eval()


def kl_vae(*, latent_channels: int, cls: Any = None, **config: float) -> Any:
    """A 4-stage AutoencoderKL (vae_scale_factor 8, as every KL VAE these families use) of width 4.

    No quant convs, like the FLUX, SD3 and Z-Image VAEs; `cls` swaps in another class of the same layout
    (FLUX.2's), `config` adds its fields (scaling and shift factors).
    """
    from diffusers import AutoencoderKL

    return seeded_module(
        lambda: (cls or AutoencoderKL)(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(4, 4, 4, 4),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=1,
            sample_size=32,
            use_quant_conv=False,
            use_post_quant_conv=False,
            **config,
        )
    )


def t5_encoder(tokenizer: Any, *, d_model: int = 32) -> Any:
    """A T5EncoderModel at the widths of diffusers' tiny T5 (2 layers), gated-GELU like the T5 v1.1 XXL."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return seeded_module(lambda: T5EncoderModel(config))


def clip_text_config(tokenizer: Any, *, hidden: int = 32) -> Any:
    """CLIPTextConfig of diffusers' tests (5 layers, 4 heads), its ids and positions the tokenizer's."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        hidden_act="gelu",
        projection_dim=hidden,
        max_position_embeddings=tokenizer.model_max_length,
    )


def qwen3_config(tokenizer: Any, *, layers: int) -> Any:
    """A Qwen3Config of hidden size 16 (diffusers' tests), head dim 8 so that 28 layers stay small."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=40960,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
