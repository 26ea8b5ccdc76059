"""Tiny SDXL builders: deterministic bytes, atomic idempotent builds, loadable by the real diffusers path."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthvlm.models.builtin.sdxl import build_tiny_sdxl, build_tiny_sdxl_refiner


def _files(root: Path) -> dict[str, bytes]:
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("builder", [build_tiny_sdxl, build_tiny_sdxl_refiner])
def test_two_builds_are_byte_identical(tmp_path: Path, builder) -> None:
    first = _files(builder(tmp_path / "a" / "model"))
    second = _files(builder(tmp_path / "b" / "model"))
    assert sorted(first) == sorted(second)
    assert first == second
    assert "model_index.json" in first
    # Only the final directory remains: the temporary build dir was renamed or removed.
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["model"]


def test_complete_build_is_returned_untouched(tmp_path: Path) -> None:
    path = build_tiny_sdxl(tmp_path / "m")
    marker = path / "unet" / "config.json"
    mtime = marker.stat().st_mtime_ns
    assert build_tiny_sdxl(tmp_path / "m") == path
    assert marker.stat().st_mtime_ns == mtime


def test_base_reloads_as_sdxl_pipeline(tmp_path: Path) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    path = build_tiny_sdxl(tmp_path / "base")
    pipe = StableDiffusionXLPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert pipe.unet.config.cross_attention_dim == 64
    assert pipe.unet.config.projection_class_embeddings_input_dim == 80  # 6 * 8 + 32
    assert tuple(pipe.unet.config.block_out_channels) == (32, 64)
    assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    assert pipe.text_encoder_2.config.eos_token_id == pipe.tokenizer_2.eos_token_id


def test_refiner_reloads_as_img2img_pipeline(tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLImg2ImgPipeline

    path = build_tiny_sdxl_refiner(tmp_path / "refiner")
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True)
    assert pipe.text_encoder is None and pipe.tokenizer is None
    assert pipe.config.requires_aesthetics_score is True
    assert pipe.unet.config.cross_attention_dim == 32
    assert pipe.unet.config.projection_class_embeddings_input_dim == 72  # 5 * 8 + 32
