"""Tiny text-to-image pipelines of every family: deterministic bytes, the real class through the real
`from_pretrained`, the family's structure (scale factor, token limits, guidance input), and a 2-step call
with exact shapes and bit-identical repeats."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from synthvlm.models.builtin.flux1 import build_tiny_flux1
from synthvlm.models.builtin.flux2_klein import build_tiny_flux2_klein
from synthvlm.models.builtin.pixart import build_tiny_pixart_sigma
from synthvlm.models.builtin.qwen_image import build_tiny_qwen_image
from synthvlm.models.builtin.sana import build_tiny_sana, build_tiny_sana_sprint
from synthvlm.models.builtin.sd3 import build_tiny_sd3
from synthvlm.models.builtin.z_image import build_tiny_z_image
from synthvlm.models.registry import BUILTIN, resolve

PROMPTS = ["a red cat on the street", "a photo of a dog with a hat"]
SEEDS = [11, 12]
SIZE = 64


@dataclass(frozen=True)
class Family:
    builder: Callable[[Path], Path]
    pipeline: str
    vae_scale_factor: int
    multiple: int
    """What height and width must be a multiple of (the VAE factor times the transformer's patching)."""
    tokenizers: dict[str, int]
    """`model_max_length` of each tokenizer attribute."""
    guidance_embeds: bool | None
    """Whether the transformer takes an embedded guidance scale (None: the config has no such field)."""
    call: dict[str, Any] = field(default_factory=dict)
    """Arguments the family needs for an exact 64 px, 2-step call."""


NO_BINNING = {"use_resolution_binning": False}
FAMILIES = {
    "tiny-flux1": Family(
        build_tiny_flux1, "FluxPipeline", 8, 16, {"tokenizer": 77, "tokenizer_2": 512}, False
    ),
    "tiny-flux2-klein": Family(
        # A distilled klein ignores guidance and warns about any value above 1.
        build_tiny_flux2_klein,
        "Flux2KleinPipeline",
        8,
        16,
        {"tokenizer": 131072},
        False,
        {"guidance_scale": 1.0},
    ),
    "tiny-sd3": Family(
        build_tiny_sd3,
        "StableDiffusion3Pipeline",
        8,
        16,
        {"tokenizer": 77, "tokenizer_2": 77, "tokenizer_3": 512},
        None,
    ),
    "tiny-sana": Family(build_tiny_sana, "SanaPipeline", 32, 32, {"tokenizer": 8192}, False, NO_BINNING),
    "tiny-sana-sprint": Family(
        build_tiny_sana_sprint, "SanaSprintPipeline", 32, 32, {"tokenizer": 8192}, True, NO_BINNING
    ),
    "tiny-pixart-sigma": Family(
        build_tiny_pixart_sigma,
        "PixArtSigmaPipeline",
        8,
        16,
        {"tokenizer": 512},
        None,
        # clean_caption=True depends on whether bs4 and ftfy are installed: ask for the plain lower-casing.
        {**NO_BINNING, "clean_caption": False},
    ),
    "tiny-qwen-image": Family(
        # No negative prompt: true CFG off (the default 4.0 would warn that it is not applied).
        build_tiny_qwen_image,
        "QwenImagePipeline",
        8,
        16,
        {"tokenizer": 131072},
        False,
        {"true_cfg_scale": 1.0},
    ),
    "tiny-z-image": Family(build_tiny_z_image, "ZImagePipeline", 8, 16, {"tokenizer": 131072}, None),
}


def _files(root: Path) -> dict[str, bytes]:
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Each family's folder, built on first use and shared by every test of this module."""
    import torch

    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            expected = torch.Generator().manual_seed(1234)
            torch.manual_seed(1234)
            cache[name] = FAMILIES[name].builder(tmp_path_factory.mktemp(name) / "model")
            # The builders seed a forked RNG: the caller's stream goes on untouched.
            assert torch.equal(torch.rand(4), torch.rand(4, generator=expected))
        return cache[name]

    return get


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def built(request: pytest.FixtureRequest, folders: Callable[[str], Path]) -> tuple[str, Path, Any]:
    """One build and one loaded pipeline per family."""
    from diffusers import DiffusionPipeline

    name = request.param
    path = folders(name)
    pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return name, path, pipe


def _generate(pipe: Any, family: Family, prompts: list[str], seeds: list[int]) -> Any:
    import torch

    out = pipe(
        prompt=list(prompts),  # some pipelines rewrite the list they are given in place
        height=SIZE,
        width=SIZE,
        num_inference_steps=2,
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        output_type="pt",
        **family.call,
    )
    return out.images


def test_two_builds_are_byte_identical(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second build, through the registry into a fresh folder, writes the same bytes."""
    name, path, _ = built
    monkeypatch.delenv("SYNTHVLM_BUILTIN_MODELS", raising=False)
    source = resolve(BUILTIN + name, models_dir=tmp_path)
    assert source.local and Path(source.location) == tmp_path / name
    first, second = _files(path), _files(tmp_path / name)
    assert sorted(first) == sorted(second)
    assert first == second
    assert "model_index.json" in first
    assert not [f for f in first if f.endswith(".bin")]  # safetensors only
    assert sum(len(b) for b in first.values()) < 8 * 2**20


def test_loads_as_the_family_pipeline(built) -> None:
    name, _, pipe = built
    family = FAMILIES[name]
    assert type(pipe).__name__ == family.pipeline
    assert not hasattr(pipe, "unet")
    assert pipe.transformer is not None
    assert pipe.vae_scale_factor == family.vae_scale_factor
    assert {k: getattr(pipe, k).model_max_length for k in family.tokenizers} == family.tokenizers
    assert pipe.transformer.config.get("guidance_embeds") == family.guidance_embeds


def test_two_step_call_is_exact_and_repeatable(built) -> None:
    import torch

    name, _, pipe = built
    family = FAMILIES[name]
    first = _generate(pipe, family, PROMPTS, SEEDS)
    assert first.shape == (2, 3, SIZE, SIZE)
    assert first.dtype == torch.float32
    assert bool(torch.isfinite(first).all())
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert float(first.std()) > 0.0
    again = _generate(pipe, family, PROMPTS, SEEDS)
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1])  # different prompts and seeds give different images


def test_height_and_width_multiple(built) -> None:
    """Height and width at the family's multiple itself (the smallest legal size) come out exactly."""
    import torch

    name, _, pipe = built
    family = FAMILIES[name]
    size = family.multiple
    image = pipe(
        prompt=PROMPTS[0],
        height=size,
        width=2 * size,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="pt",
        **family.call,
    ).images
    assert tuple(image.shape) == (1, 3, size, 2 * size)


def test_qwen_image_template_drops_exactly_the_system_prompt(folders: Callable[[str], Path]) -> None:
    """Qwen-Image drops the first 34 template tokens: they must be the system part, up to "user\\n"."""
    from diffusers import QwenImagePipeline

    pipe = QwenImagePipeline.from_pretrained(folders("tiny-qwen-image"), local_files_only=True)
    assert pipe.prompt_template_encode_start_idx == 34
    ids = pipe.tokenizer(pipe.prompt_template_encode.format("a red cat")).input_ids
    tokens = pipe.tokenizer.convert_ids_to_tokens(ids)
    assert len(ids) == 34 + 3 + 5  # system part, "a Ġred Ġcat", then "<|im_end|> Ċ <|im_start|> assistant Ċ"
    assert tokens[:2] == ["<|im_start|>", "system"]
    assert tokens[31:37] == ["<|im_start|>", "user", "Ċ", "a", "Ġred", "Ġcat"]


@pytest.mark.parametrize(
    ("name", "thinking", "suffix"),
    [("tiny-flux2-klein", False, "<think>\n\n</think>\n\n"), ("tiny-z-image", True, "")],
)
def test_qwen3_chat_template(name: str, thinking: bool, suffix: str, folders: Callable[[str], Path]) -> None:
    """The text FLUX.2-klein (thinking off) and Z-Image (thinking on) build around a prompt."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folders(name) / "tokenizer")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a cat"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=thinking,
    )
    assert text == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n" + suffix
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)
    assert tokens[:6] == ["<|im_start|>", "user", "Ċ", "a", "Ġcat", "<|im_end|>"]


@pytest.mark.parametrize(
    ("name", "attribute", "tokens"),
    [
        ("tiny-sana", "tokenizer", ["<bos>", "a", "▁red", "▁cat"]),  # Gemma: BOS in front, no EOS
        ("tiny-pixart-sigma", "tokenizer", ["▁a", "▁red", "▁cat", "</s>"]),  # T5: EOS appended
        ("tiny-sd3", "tokenizer_3", ["▁a", "▁red", "▁cat", "</s>"]),
        ("tiny-flux1", "tokenizer_2", ["▁a", "▁red", "▁cat", "</s>"]),
        (
            "tiny-flux1",
            "tokenizer",
            ["<|startoftext|>", "a</w>", "r", "e", "d</w>", "cat</w>", "<|endoftext|>"],
        ),
    ],
)
def test_special_tokens_around_a_prompt(
    name: str, attribute: str, tokens: list[str], folders: Callable[[str], Path]
) -> None:
    """The tokens each family's tokenizer adds around a text, which a caller counting tokens must add too."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folders(name) / attribute)
    assert tokenizer.convert_ids_to_tokens(tokenizer("a red cat").input_ids) == tokens
