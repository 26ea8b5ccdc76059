"""The generation engine on the tiny presets: seeding, determinism, retries, truncation, refiner hand-off."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from synthvlm.config import GenerateConfig, GeneratorConfig
from synthvlm.core.errors import UserError
from synthvlm.core.seeds import derive_seed
from synthvlm.generate.engine import ImageGenerator, _to_pixels, directory_revision
from synthvlm.models.registry import builtin_dir

RUN_SEED = 7
PROMPTS = ["a photo of the cat", "the cat"]
IDS = ["cap-a", "cap-b"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _generator(
    models_dir: Path, preset: str = "tiny", *, max_attempts: int = 3, **overrides: object
) -> ImageGenerator:
    generator = GeneratorConfig(preset=preset, **overrides)
    return ImageGenerator(
        generator, models_dir=models_dir, run_seed=RUN_SEED, device="cpu", max_attempts=max_attempts
    )


@pytest.fixture(scope="module")
def tiny(models_dir: Path) -> ImageGenerator:
    return _generator(models_dir)


def _pixels(result) -> np.ndarray:
    return np.asarray(result.image)


def test_same_inputs_give_bit_identical_images_and_derived_seeds(
    models_dir: Path, tiny: ImageGenerator
) -> None:
    first = tiny.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 0])
    # A fresh instance (what another worker builds) reloads and reproduces the pixels.
    other = _generator(models_dir)
    second = other.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 0])
    for a, b, cid in zip(first, second, IDS, strict=True):
        assert (a.status, a.reason, a.attempts) == ("ok", None, 1)
        assert a.seed == b.seed == derive_seed(RUN_SEED, cid, 0, attempt=0)
        assert a.image.mode == "RGB" and a.image.size == (64, 64)
        assert _pixels(a).dtype == np.uint8
        assert np.array_equal(_pixels(a), _pixels(b))
    assert not np.array_equal(_pixels(first[0]), _pixels(first[1]))


def test_different_candidate_index_gives_different_image(tiny: ImageGenerator) -> None:
    prompts = [PROMPTS[0]] * 2
    zero, one = tiny.generate(prompts, caption_ids=[IDS[0]] * 2, candidate_indices=[0, 1])
    assert zero.seed == derive_seed(RUN_SEED, IDS[0], 0) != one.seed == derive_seed(RUN_SEED, IDS[0], 1)
    assert np.abs(_pixels(zero).astype(int) - _pixels(one).astype(int)).max() > 0


def test_nan_image_is_regenerated_with_next_attempt_seed(models_dir: Path, monkeypatch) -> None:
    gen = _generator(models_dir)
    vae = gen._load()[0].vae
    decode = vae.decode
    batch_sizes: list[int] = []

    def nan_first_image_once(latents, *args, **kwargs):
        out = decode(latents, *args, **kwargs)
        batch_sizes.append(latents.shape[0])
        if len(batch_sizes) == 1:
            out[0][0] = float("nan")
        return out

    monkeypatch.setattr(vae, "decode", nan_first_image_once)
    results = gen.generate(PROMPTS, caption_ids=IDS, candidate_indices=[3, 3])
    assert batch_sizes == [2, 1]  # whole batch, then only the bad image as its own batch
    retried, kept = results
    assert (retried.status, retried.reason, retried.attempts) == ("ok", None, 2)
    assert retried.seed == derive_seed(RUN_SEED, IDS[0], 3, attempt=1)
    assert (kept.status, kept.attempts, kept.seed) == ("ok", 1, derive_seed(RUN_SEED, IDS[1], 3, attempt=0))
    # The retry is exactly the image its (attempt 1) seed gives in a batch of one.
    monkeypatch.setattr(vae, "decode", decode)
    direct = gen._run([PROMPTS[0]], [retried.seed])[0].permute(1, 2, 0).numpy()
    assert np.array_equal(_pixels(retried), (direct * 255).round().astype(np.uint8))


def test_pixels_round_like_diffusers_and_flag_bad_images() -> None:
    import torch

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((4, 3, 5, 6), dtype=np.float32))
    images[1, 2, 4, 5] = float("nan")
    images[2] = 0.25
    images[3, :, :, :] = 0.5
    images[3, 0, 0, 0] = 0.501  # rounds to the same byte as 0.5: constant after quantisation
    pixels, reasons = _to_pixels(images)
    assert reasons == [None, "nan_output", "constant_image", "constant_image"]
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 5, 6, 3)
    # diffusers' numpy_to_pil: float32 image * 255, rounded half to even, cast to uint8.
    expected = (images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(pixels[0], expected)
    assert (pixels[2] == 64).all()  # 0.25 * 255 = 63.75


def test_out_of_memory_splits_the_batch_and_lowers_the_ceiling(models_dir: Path, monkeypatch) -> None:
    import torch

    prompts = ["a cat", "a dog", "a red bus", "the sky"]
    ids = ["c0", "c1", "c2", "c3"]
    ref = _generator(models_dir)
    pairs = [
        ref.generate(prompts[i : i + 2], caption_ids=ids[i : i + 2], candidate_indices=[0] * 2)
        for i in (0, 2)
    ]
    last = ref.generate(prompts[2:3], caption_ids=ids[2:3], candidate_indices=[0])
    gen = _generator(models_dir)
    base = gen._load()[0]
    call = type(base).__call__
    sizes: list[int] = []

    def small_card(self, *args, **kwargs):
        sizes.append(len(kwargs["prompt"]))
        if len(kwargs["prompt"]) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return call(self, *args, **kwargs)

    monkeypatch.setattr(type(base), "__call__", small_card)
    first = gen.generate(prompts, caption_ids=ids, candidate_indices=[0] * 4)
    second = gen.generate(prompts[:3], caption_ids=ids[:3], candidate_indices=[0] * 3)
    assert sizes == [4, 2, 2, 2, 1]  # one failed call of 4, then the ceiling of 2 holds
    assert gen.max_batch == 2
    # The same images as calls of 2 (and a last call of 1) give: batch composition can move low bits.
    for got, want in zip([*first, *second], [*pairs[0], *pairs[1], *pairs[0], *last], strict=True):
        assert (got.status, got.seed) == ("ok", want.seed)
        assert np.array_equal(_pixels(got), _pixels(want))


def test_out_of_memory_on_a_single_image_is_raised(models_dir: Path, monkeypatch) -> None:
    import torch

    gen = _generator(models_dir)
    base = gen._load()[0]

    def no_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(type(base), "__call__", no_memory)
    with pytest.raises(torch.OutOfMemoryError):
        gen.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 0])
    assert gen.max_batch == 1


def test_constant_image_on_every_attempt_fails(models_dir: Path, monkeypatch) -> None:
    import torch

    gen = _generator(models_dir, max_attempts=3)
    vae = gen._load()[0].vae
    decode = vae.decode
    calls: list[int] = []

    def all_black(latents, *args, **kwargs):
        calls.append(latents.shape[0])
        (image,) = decode(latents, *args, **kwargs)
        return (torch.full_like(image, -1.0),)  # decodes to [0, 1] zeros: an all-black image

    monkeypatch.setattr(vae, "decode", all_black)
    (result,) = gen.generate([PROMPTS[0]], caption_ids=[IDS[0]], candidate_indices=[0])
    assert calls == [1, 1, 1]
    assert (result.status, result.reason, result.attempts, result.image) == (
        "failed",
        "constant_image",
        3,
        None,
    )
    assert result.seed == derive_seed(RUN_SEED, IDS[0], 0, attempt=2)


def test_prompt_truncation_is_reported(tiny: ImageGenerator) -> None:
    # "a photo of the cat" -> a</w> photo</w> o f</w> the</w> cat</w> (tiny tokenizer merges) + BOS/EOS.
    assert tiny.prompt_tokens(["a photo of the cat", "cat " * 200]) == [(8, False), (202, True)]
    assert tiny.prompt_tokens(["cat " * 75, "cat " * 76]) == [(77, False), (78, True)]


def test_refiner_hand_off(models_dir: Path, monkeypatch) -> None:
    gen = _generator(models_dir, preset="tiny-refiner", width=64, height=48)
    base, refiner = gen._load()
    assert type(refiner).__name__ == "StableDiffusionXLImg2ImgPipeline"
    seen: dict[str, dict] = {}
    for name, pipe in (("base", base), ("refiner", refiner)):
        call = type(pipe).__call__

        def spy(self, *args, _name=name, _call=call, **kwargs):
            seen[_name] = kwargs
            return _call(self, *args, **kwargs)

        monkeypatch.setattr(type(pipe), "__call__", spy)
    results = gen.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 1])
    assert seen["base"]["denoising_end"] == 0.5 and seen["base"]["output_type"] == "latent"
    assert seen["refiner"]["denoising_start"] == 0.5 and seen["refiner"]["output_type"] == "pt"
    assert tuple(seen["refiner"]["image"].shape) == (2, 4, 24, 32)  # latents (VAE scale 2), not pixels
    assert seen["refiner"]["num_inference_steps"] == seen["base"]["num_inference_steps"] == 4
    assert seen["refiner"]["negative_prompt"] == ["", ""]
    for result in results:
        assert (result.status, result.attempts) == ("ok", 1)
        assert result.image.size == (64, 48)
        assert len(np.unique(_pixels(result))) > 1


def test_provenance(models_dir: Path, tiny: ImageGenerator) -> None:
    prov = tiny.provenance
    assert prov.model_id == "builtin:tiny-sdxl"
    assert prov.refiner_id is None and prov.refiner_revision is None
    assert prov.scheduler == "EulerDiscreteScheduler"
    assert prov.dtype == "float32"
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", prov.model_revision)
    built = builtin_dir(models_dir)  # the session's shared folder in tests
    assert prov.model_revision == directory_revision(built / "tiny-sdxl")

    refined = _generator(models_dir, preset="tiny-refiner").provenance
    assert refined.model_revision == prov.model_revision
    assert refined.refiner_id == "builtin:tiny-sdxl-refiner"
    assert refined.refiner_revision == directory_revision(built / "tiny-sdxl-refiner")
    assert refined.refiner_revision != prov.model_revision

    pinned = _generator(models_dir, revision="abc123").provenance
    assert pinned.model_revision == "abc123"


def test_unknown_builtin_and_mismatched_lengths(models_dir: Path, tiny: ImageGenerator) -> None:
    with pytest.raises(UserError, match="builtin:tiny-sdxl"):
        _generator(models_dir, model="builtin:nope").prompt_tokens(["x"])
    with pytest.raises(ValueError, match="differ in length"):
        tiny.generate(PROMPTS, caption_ids=IDS[:1], candidate_indices=[0, 0])


def test_compile_and_quantize_settings_are_validated() -> None:
    assert GenerateConfig(preset="tiny", compile=True).compile is True
    assert GenerateConfig(preset="tiny", compile="max-autotune").compile == "max-autotune"
    assert GenerateConfig(preset="tiny", quantize="fp8").quantize == "fp8"
    with pytest.raises(ValueError, match="max-autotune"):
        GenerateConfig(preset="tiny", compile="fast")
    with pytest.raises(ValueError, match="fp8"):
        GenerateConfig(preset="tiny", quantize="int8")


@pytest.mark.fault
def test_max_autotune_recipe_runs_the_real_compiler_and_keeps_the_pixels(models_dir: Path) -> None:
    """The CUDA speed recipe applied on CPU (inductor compiles for whichever device the model is on):
    QKV fused, UNet and VAE decoder compiled whole; pixels within one level of eager mode. One prompt at
    32 x 32, one step: the smallest call that runs every compiled graph."""
    import torch
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    gen = _generator(models_dir, width=32, height=32, steps=1)
    eager = gen.generate(PROMPTS[:1], caption_ids=IDS[:1], candidate_indices=[0])
    base, _ = gen._load()
    unet, vae = base.unet, base.vae
    gen.family.optimize(base, compile="max-autotune", quantize=None)

    assert isinstance(base.unet, torch._dynamo.eval_frame.OptimizedModule) and base.unet._orig_mod is unet
    assert hasattr(vae.decode, "_torchdynamo_orig_callable") and vae.use_slicing
    for model in (unet, vae):
        assert model.attn_processors
        assert all(isinstance(p, FusedAttnProcessor2_0) for p in model.attn_processors.values())
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    compiled = gen.generate(PROMPTS[:1], caption_ids=IDS[:1], candidate_indices=[0])
    for a, b in zip(eager, compiled, strict=True):
        assert (b.status, b.seed, b.image.size) == ("ok", a.seed, (32, 32))
        assert np.abs(_pixels(a).astype(int) - _pixels(b).astype(int)).max() <= 1


def test_fp8_refused_in_one_line_where_it_cannot_run(
    models_dir: Path, tiny: ImageGenerator, monkeypatch
) -> None:
    with pytest.raises(UserError, match=r"fp8 needs a CUDA GPU of compute capability 8.9 .* runs on cpu$"):
        _generator(models_dir, quantize="fp8").prompt_tokens(["x"])
    base, _ = tiny._load()
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # as if torchao were not installed
    with pytest.raises(UserError, match=r"fp8 needs torchao: pip install 'synthvlm\[fp8\]'"):
        tiny.family.optimize(base, compile=False, quantize="fp8")


@pytest.mark.gpu
def test_fp8_unet_on_a_capable_gpu(models_dir: Path) -> None:
    import torch

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("needs a CUDA GPU of compute capability 8.9+")
    Float8Tensor = pytest.importorskip("torchao.quantization").Float8Tensor  # noqa: N806

    fp8 = GeneratorConfig(preset="tiny", quantize="fp8")
    gen = ImageGenerator(fp8, models_dir=models_dir, run_seed=RUN_SEED)
    base, _ = gen._load()
    linears = [m for m in base.unet.modules() if isinstance(m, torch.nn.Linear)]
    fp8 = [m for m in linears if isinstance(m.weight, Float8Tensor)]
    assert len(fp8) >= len(linears) // 2, (len(fp8), len(linears))
    assert gen.provenance.dtype == "bfloat16+fp8"
    first = gen.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 0])
    second = gen.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 0])
    for a, b in zip(first, second, strict=True):
        assert (a.status, a.attempts, a.image.size) == ("ok", 1, (64, 64))
        assert np.array_equal(_pixels(a), _pixels(b))


@pytest.mark.gpu
def test_cuda_auto_is_bfloat16_and_valid(models_dir: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    gen = ImageGenerator(GeneratorConfig(preset="tiny-refiner"), models_dir=models_dir, run_seed=RUN_SEED)
    assert (gen.device, gen.provenance.dtype) == ("cuda", "bfloat16")
    base, _ = gen._load()
    assert base.unet.dtype == base.vae.dtype == torch.bfloat16 and base.vae.use_slicing
    first = gen.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 0])
    second = gen.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 0])
    for a, b in zip(first, second, strict=True):
        assert (a.status, a.attempts, a.image.size) == ("ok", 1, (64, 64))
        assert np.array_equal(_pixels(a), _pixels(b))
