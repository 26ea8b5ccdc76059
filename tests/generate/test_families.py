"""Every generator family on its tiny builtin: the call the engine builds, prompt accounting as the pipeline
tokenizes, determinism, the out-of-memory split, and the config errors a family refuses before any work."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from synthvlm.config import GeneratorConfig, parse_config
from synthvlm.core.errors import UserError
from synthvlm.core.seeds import derive_seed
from synthvlm.generate.engine import ImageGenerator
from synthvlm.generate.families import FAMILIES, GUIDANCE_MEANING
from synthvlm.generate.presets import PRESETS

RUN_SEED = 3
TINY = {name: f"tiny-{name}" if name != "sdxl" else "tiny" for name in FAMILIES}
PROMPTS = ["A red bus parked on a quiet street.", "two dogs"]
IDS = ["c-0", "c-1"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _generator(models_dir: Path, preset: str, **overrides: object) -> ImageGenerator:
    return ImageGenerator(
        GeneratorConfig(preset=preset, **overrides), models_dir=models_dir, run_seed=RUN_SEED, device="cpu"
    )


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_gen(request: pytest.FixtureRequest, models_dir: Path) -> ImageGenerator:
    return _generator(models_dir, TINY[request.param])


def test_every_family_has_a_tiny_preset_and_the_presets_name_real_families():
    assert {PRESETS[TINY[name]].family for name in FAMILIES} == set(FAMILIES)
    assert {p.family for p in PRESETS.values()} == set(FAMILIES)
    assert {p.commercial for p in PRESETS.values()} == {"yes", "no", "limited"}
    for name, family in FAMILIES.items():
        assert PRESETS[TINY[name]].settings["model"] == f"builtin:{family.tiny}"
        assert family.guidance in GUIDANCE_MEANING


def test_the_call_takes_only_what_the_pipeline_signature_accepts(family_gen: ImageGenerator):
    pipe, _ = family_gen._load()
    family, cfg = family_gen.family, family_gen.config
    assert type(pipe).__name__ in family.pipelines
    args = family.call_arguments(pipe, cfg, PROMPTS)
    accepted = inspect.signature(type(pipe).__call__).parameters
    assert set(args) <= set(accepted), set(args) - set(accepted)
    assert args["prompt"] == PROMPTS and args["num_inference_steps"] == cfg.steps == 2
    assert (args["width"], args["height"]) == (64, 64)
    # guidance in the family's meaning
    if family.guidance == "true-cfg":
        assert args["true_cfg_scale"] == cfg.guidance and "guidance_scale" not in args
    else:
        assert args["guidance_scale"] == cfg.guidance and "true_cfg_scale" not in args
    assert ("negative_prompt" in args) == family.cfg_on(cfg)
    if "negative_prompt" in args:
        assert args["negative_prompt"] == ["", ""]
    if family.max_sequence_length is None:
        assert "max_sequence_length" not in args
    else:
        assert args["max_sequence_length"] == accepted["max_sequence_length"].default
    for key, value in family.fixed_arguments.items():
        assert args[key] == value


@pytest.mark.parametrize(
    ("preset", "overrides", "expected"),
    [
        ("tiny", {"guidance": 1.0}, {"guidance_scale": 1.0}),  # CFG off: no negative prompt
        ("tiny-flux1", {"true_cfg": 3.0, "negative_prompt": "blurry"}, {"true_cfg_scale": 3.0}),
        ("tiny-qwen-image", {"guidance": 4.0}, {"true_cfg_scale": 4.0, "negative_prompt": ["", ""]}),
        ("tiny-z-image", {"guidance": 0.5}, {"guidance_scale": 0.5, "negative_prompt": ["", ""]}),
        ("tiny-sd3", {"max_sequence_length": 77}, {"max_sequence_length": 77}),
    ],
)
def test_guidance_settings_map_to_the_family_arguments(models_dir, preset, overrides, expected):
    gen = _generator(models_dir, preset, **overrides)
    args = gen.family.call_arguments(gen._load()[0], gen.config, PROMPTS)
    assert {k: args.get(k) for k in expected} == expected
    if preset == "tiny":
        assert "negative_prompt" not in args
    if preset == "tiny-flux1":
        assert args["negative_prompt"] == ["blurry", "blurry"]


def _tokenizer_calls(pipe, family, monkeypatch) -> list[tuple[str, int, int]]:
    """Spy on the sequence tokenizer: (text, tokens kept, tokens without truncation) per text it is given
    during a real pipeline call."""
    tokenizer = family.sequence_tokenizer(pipe)
    seen: list[tuple[str, int, int]] = []
    call = type(tokenizer).__call__

    def spy(self, text, *args, **kwargs):
        out = call(self, text, *args, **kwargs)
        if self is tokenizer and kwargs.get("truncation"):
            texts = [text] if isinstance(text, str) else list(text)
            full = call(self, texts, truncation=False)["input_ids"]
            kept = out["input_ids"]
            mask = out.get("attention_mask")
            for i, t in enumerate(texts):
                n = int(sum(mask[i])) if mask is not None else len(kept[i])
                seen.append((t, n, len(full[i])))
        return out

    monkeypatch.setattr(type(tokenizer), "__call__", spy)
    return seen


def test_prompt_tokens_and_truncation_are_what_the_pipeline_does(family_gen, monkeypatch):
    """`prompt_tokens` is the length of exactly the text the pipeline tokenizes; `truncated` marks exactly
    the prompts whose sequence the pipeline cuts, here with a limit of 24 tokens (a limit of 77 for the
    CLIP-only family)."""
    family = family_gen.family
    limit = 24 if family.max_sequence_length is not None else None
    gen = family_gen
    if limit is not None:
        gen = ImageGenerator(
            gen.config.model_copy(update={"max_sequence_length": limit}),
            models_dir=gen.models_dir,
            run_seed=RUN_SEED,
            device="cpu",
        )
        gen._pipes = family_gen._load()  # the same loaded pipeline
    pipe = gen._load()[0]
    prompts = ["a cat", "word " * 10, "many words " * 40, "x " * 300]
    counted = gen.prompt_tokens(prompts)
    seen = _tokenizer_calls(pipe, family, monkeypatch)
    gen.generate(prompts, caption_ids=[f"p{i}" for i in range(4)], candidate_indices=[0] * 4)
    positive = [s for s in seen if s[0] in family.encoded_texts(pipe, prompts)]
    assert [t for t, _, _ in positive[:4]] == family.encoded_texts(pipe, prompts)
    for (n, truncated), (_, kept, full) in zip(counted, positive[:4], strict=True):
        assert n == full
        if family.name == "qwen-image":  # cut after encoding: the template's head, then the limit
            kept = min(kept, family.token_cap(pipe, gen.config))
        assert truncated == (kept < full)
    assert not counted[0][1] and counted[-1][1]  # both kinds were checked


def test_two_runs_give_identical_pixels_and_per_image_seeds(models_dir, family_gen):
    first = family_gen.generate(PROMPTS, caption_ids=IDS, candidate_indices=[0, 1])
    again = _generator(models_dir, family_gen.config.preset).generate(
        PROMPTS, caption_ids=IDS, candidate_indices=[0, 1]
    )
    for a, b, cid, k in zip(first, again, IDS, [0, 1], strict=True):
        assert (a.status, a.attempts, a.image.size) == ("ok", 1, (64, 64))
        assert a.seed == b.seed == derive_seed(RUN_SEED, cid, k)
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_out_of_memory_split_keeps_each_image_seed(models_dir, family_gen, monkeypatch):
    import torch

    prompts, ids = [*PROMPTS, "a third prompt"], [*IDS, "c-2"]
    ones = [
        family_gen.generate([p], caption_ids=[c], candidate_indices=[0])[0]
        for p, c in zip(prompts, ids, strict=True)
    ]
    gen = _generator(models_dir, family_gen.config.preset)
    gen._pipes = family_gen._load()
    run = gen.family.run
    sizes: list[int] = []

    def small_card(pipes, cfg, batch, generators):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return run(pipes, cfg, batch, generators)

    monkeypatch.setattr(gen.family, "run", small_card)
    split = gen.generate(prompts, caption_ids=ids, candidate_indices=[0, 0, 0])
    assert sizes == [3, 1, 1, 1] and gen.max_batch == 1
    for got, want in zip(split, ones, strict=True):
        assert (got.status, got.seed) == ("ok", want.seed)
        assert np.array_equal(np.asarray(got.image), np.asarray(want.image))


def test_a_model_of_another_family_is_one_line_naming_the_key(models_dir):
    gen = _generator(models_dir, "tiny-flux1", model="builtin:tiny-sdxl")
    with pytest.raises(UserError) as err:
        gen.prompt_tokens(["x"])
    assert str(err.value) == (
        "generate.model builtin:tiny-sdxl is a StableDiffusionXLPipeline, not a pipeline of the flux1 family "
        "(FluxPipeline) that preset tiny-flux1 runs: choose a sdxl preset"
    )


@pytest.mark.parametrize(
    ("generate", "message"),
    [
        (
            {"preset": "tiny-flux2-klein", "negative_prompt": "blurry"},
            "generate.negative_prompt: flux2-klein (FLUX.2 [klein]) takes no negative prompt; remove it",
        ),
        (
            {"preset": "sana-sprint", "negative_prompt": "blurry"},
            "generate.negative_prompt: sana-sprint (SANA-Sprint) takes no negative prompt; remove it",
        ),
        (
            {"preset": "flux1-dev", "negative_prompt": "blurry"},
            "generate.negative_prompt: flux1 (FLUX.1) uses a negative prompt only with true_cfg above 1; at "
            "these settings it would be ignored",
        ),
        (
            {"preset": "z-image-turbo", "negative_prompt": "blurry"},
            "generate.negative_prompt: z-image (Z-Image) uses a negative prompt only with guidance above 0; "
            "at these settings it would be ignored",
        ),
        (
            {"preset": "flux1-schnell", "refiner": "stabilityai/stable-diffusion-xl-refiner-1.0"},
            "generate.refiner: only the sdxl family takes a refiner; flux1 (FLUX.1) has none",
        ),
        (
            {"preset": "sdxl", "true_cfg": 4.0},
            "generate.true_cfg: only the flux1 family takes a true CFG scale beside its guidance; for sdxl "
            "(Stable Diffusion XL) generate.guidance is the classifier-free guidance scale (on above 1)",
        ),
        (
            {"preset": "sdxl-base", "max_sequence_length": 256},
            "generate.max_sequence_length: sdxl (Stable Diffusion XL) reads its prompt through CLIP's fixed "
            "77 tokens; remove it",
        ),
        (
            {"preset": "sana-1600m", "width": 1000},
            "generate.width: sana (SANA) needs a multiple of 32, not 1000",
        ),
        (
            {"preset": "sd35-large", "max_sequence_length": 1024},
            "generate.max_sequence_length: sd3 (Stable Diffusion 3 / 3.5) takes 1 to 512 tokens, not 1024",
        ),
        (
            {"generators": [{"preset": "tiny"}, {"preset": "tiny-flux2-klein", "negative_prompt": "x"}]},
            "generate.generators.1.negative_prompt: flux2-klein (FLUX.2 [klein]) takes no negative prompt; "
            "remove it",
        ),
    ],
)
def test_an_argument_the_family_cannot_take_is_one_line_naming_the_key(generate, message):
    with pytest.raises(UserError) as err:
        parse_config({"generate": generate}, origin="recipe.yaml")
    assert str(err.value) == f"recipe.yaml: invalid config: {message}"


@pytest.mark.parametrize(
    ("generate", "message"),
    [
        (
            {"generators": [{"preset": "tiny", "share": 0.6}, {"preset": "tiny-flux1", "share": 0.3}]},
            "generate: generators[].share: the shares add up to 0.9, not 1",
        ),
        (
            {"generators": [{"preset": "tiny", "share": 0.6}, {"preset": "tiny-flux1"}]},
            "generate: generators[].share: give every entry a share, or none (equal shares)",
        ),
        (
            {"generators": [{"preset": "tiny"}, {"preset": "tiny", "steps": 3}]},
            "generate: two generators are named tiny: give each entry its own `name`",
        ),
        (
            {"steps": 3, "generators": [{"preset": "tiny"}]},
            "generate: steps set beside generators: with a pool, set them inside each generator entry",
        ),
        (
            {"generators": [{"preset": "flux3"}]},
            "generate.generators.0: unknown generate preset 'flux3'; valid: " + str(sorted(PRESETS)),
        ),
    ],
)
def test_bad_pools_are_one_line_naming_the_key(generate, message):
    with pytest.raises(UserError) as err:
        parse_config({"generate": generate}, origin="recipe.yaml")
    assert str(err.value) == f"recipe.yaml: invalid config: {message}"


def test_switching_preset_carries_no_other_family_field():
    config = parse_config({"generate": {"preset": "sdxl"}}, origin="x").updated(
        "generate", preset="flux1-schnell"
    )
    gen = config.resolved().generate
    assert (gen.model, gen.refiner, gen.high_noise_frac) == ("black-forest-labs/FLUX.1-schnell", None, None)
    assert (gen.steps, gen.guidance, gen.max_sequence_length) == (4, 0.0, 256)
