import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthvlm.config import NsfwConfig
from synthvlm.core.errors import UserError
from synthvlm.models import registry
from synthvlm.models.builtin.safety import CONCEPT_THRESHOLDS, SPECIAL_THRESHOLDS, build_tiny_safety_checker
from synthvlm.score.nsfw import NsfwScorer
from synthvlm.score.pairs import scorer_class

COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "purple", "white", "black", "gray")
FLAGGED = {"red", "green", "blue", "purple", "black"}
"""What the tiny checker flags among the solid colours (module docstring of builtin/safety.py)."""


def _images():
    rng = np.random.default_rng(0)
    noise = [Image.fromarray(rng.integers(0, 256, (36 + 3 * i, 44, 3), dtype=np.uint8)) for i in range(4)]
    return noise + [Image.new("RGB", (40, 32), c) for c in COLOURS]


IMAGES = _images()
CAPTIONS = [f"caption {i}" for i in range(len(IMAGES))]
WANT_FLAGS = [False] * 4 + [c in FLAGGED for c in COLOURS]


def _scorer(tmp_path, *, model="builtin:tiny-safety-checker", batch_size=3, device="cpu"):
    return NsfwScorer(
        NsfwConfig(model=model),
        run_dir=tmp_path,
        models_dir=tmp_path / "models",
        device=device,
        batch_size=batch_size,
        workers=1,
    )


@pytest.fixture(scope="module")
def tiny_checker(tmp_path_factory):
    return Path(
        registry.location("builtin:tiny-safety-checker", models_dir=tmp_path_factory.mktemp("models"))
    )


def _load(path, device="cpu"):
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessorPil

    dtype = torch.float16 if device == "cuda" else torch.float32
    checker = StableDiffusionSafetyChecker.from_pretrained(path, local_files_only=True, dtype=dtype)
    processor = CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
    return checker.to(device).eval(), processor


def _checker_forward(checker, processor, images):
    """The checker's own flags, from its forward on the pixels the SD pipeline would give it."""
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    _, flags = checker(clip_input=pixels.to(checker.device, checker.dtype), images=np.zeros((len(images), 1)))
    return flags


def _step_by_step(checker, processor, images):
    """diffusers' forward written out, one image and one concept at a time: (concept scores, special care)."""
    import torch

    concept_scores, special_care = [], []
    with torch.no_grad():
        for image in images:
            pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
            emb = checker.visual_projection(checker.vision_model(pixel_values=pixels).pooler_output)
            emb = torch.nn.functional.normalize(emb, dim=-1)[0]
            special = torch.nn.functional.normalize(checker.special_care_embeds, dim=-1) @ emb
            concept = torch.nn.functional.normalize(checker.concept_embeds, dim=-1) @ emb
            adjustment, care = 0.0, False
            for cos, threshold in zip(
                special.numpy(), checker.special_care_embeds_weights.tolist(), strict=True
            ):
                if round(cos - threshold + adjustment, 3) > 0:
                    adjustment, care = 0.01, True
            scores = [
                round(cos - threshold + adjustment, 3)
                for cos, threshold in zip(
                    concept.numpy(), checker.concept_embeds_weights.tolist(), strict=True
                )
            ]
            concept_scores.append(scores)
            special_care.append(care)
    return np.array(concept_scores, dtype=np.float64), special_care


def test_flag_is_the_checkers_own_and_margin_its_largest_concept_score(tmp_path, tiny_checker):
    got = _scorer(tmp_path, batch_size=4).score(IMAGES, CAPTIONS)
    assert list(got) == ["nsfw", "nsfw_margin"]
    assert got["nsfw"].dtype == np.bool_ and got["nsfw_margin"].dtype == np.float64
    checker, processor = _load(tiny_checker)
    assert got["nsfw"].tolist() == _checker_forward(checker, processor, IMAGES) == WANT_FLAGS
    scores, special_care = _step_by_step(checker, processor, IMAGES)
    assert np.abs(got["nsfw_margin"] - scores.max(axis=1)).max() < 1e-6
    assert np.array_equal(got["nsfw_margin"] > 0, got["nsfw"])
    # both special-care outcomes occur (green and black get the 0.01 adjustment), so it is checked too
    assert special_care == [False] * 4 + [c in ("green", "black") for c in COLOURS]
    # the margins are 3-decimal numbers, as the checker rounds them
    assert np.array_equal(got["nsfw_margin"], np.round(got["nsfw_margin"], 3))


def test_batch_size_does_not_change_scores_and_order_is_kept(tmp_path):
    one = _scorer(tmp_path, batch_size=1).score(IMAGES, CAPTIONS)
    three = _scorer(tmp_path, batch_size=3).score(IMAGES, CAPTIONS)
    assert np.array_equal(one["nsfw"], three["nsfw"])
    assert np.abs(one["nsfw_margin"] - three["nsfw_margin"]).max() < 1e-6
    order = list(reversed(range(len(IMAGES))))
    shuffled = _scorer(tmp_path, batch_size=3).score([IMAGES[i] for i in order], [CAPTIONS[i] for i in order])
    assert shuffled["nsfw"].tolist() == [WANT_FLAGS[i] for i in order]
    assert np.abs(shuffled["nsfw_margin"] - three["nsfw_margin"][order]).max() < 1e-6
    empty = _scorer(tmp_path).score([], [])
    assert empty["nsfw"].shape == empty["nsfw_margin"].shape == (0,)


def test_captions_do_not_change_scores(tmp_path):
    a = _scorer(tmp_path).score(IMAGES, CAPTIONS)
    b = _scorer(tmp_path).score(IMAGES, ["something else"] * len(IMAGES))
    assert np.array_equal(a["nsfw"], b["nsfw"]) and np.array_equal(a["nsfw_margin"], b["nsfw_margin"])


def test_bad_input(tmp_path):
    assert scorer_class("nsfw") is NsfwScorer
    with pytest.raises(ValueError, match="pair up"):
        _scorer(tmp_path).score(IMAGES[:2], CAPTIONS[:1])
    with pytest.raises(UserError, match="cannot load model 'no-such-org/no-such-checker'"):
        _scorer(tmp_path, model="no-such-org/no-such-checker").score(IMAGES[:1], CAPTIONS[:1])


def _digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_tiny_checker_build_is_deterministic_small_and_loads_like_the_hub_checkpoint(tmp_path):
    import torch

    before = torch.random.get_rng_state()
    a = build_tiny_safety_checker(tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_tiny_safety_checker(tmp_path / "b")
    assert _digests(a) == _digests(b)
    assert sorted(_digests(a)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert sum(p.stat().st_size for p in a.iterdir()) < 1_000_000
    checker, _ = _load(a)
    concept = checker.concept_embeds_weights
    special = checker.special_care_embeds_weights
    assert concept.shape == (17,) and special.shape == (3,)
    assert CONCEPT_THRESHOLDS[0] <= concept.min() and concept.max() <= CONCEPT_THRESHOLDS[1]
    assert SPECIAL_THRESHOLDS[0] <= special.min() and special.max() <= SPECIAL_THRESHOLDS[1]
    assert len(set(concept.tolist())) == 17  # one threshold per concept, so indices must line up
    assert build_tiny_safety_checker(a) == a


@pytest.mark.gpu
def test_cuda_flags_are_the_float16_checkers_own(tmp_path, tiny_checker):
    import torch

    cpu = _scorer(tmp_path).score(IMAGES, CAPTIONS)
    cuda = _scorer(tmp_path, device="cuda")
    got = cuda.score(IMAGES, CAPTIONS)
    assert cuda._load()[0].dtype == torch.float16
    checker, processor = _load(tiny_checker, device="cuda")
    assert got["nsfw"].tolist() == _checker_forward(checker, processor, IMAGES)
    assert np.array_equal(got["nsfw_margin"] > 0, got["nsfw"])
    assert np.abs(got["nsfw_margin"] - cpu["nsfw_margin"]).max() < 1e-2
