from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthvlm.config import PickScoreConfig
from synthvlm.core.errors import UserError
from synthvlm.models import registry
from synthvlm.score.pairs import scorer_class
from synthvlm.score.pickscore import PickScorer

CAPTIONS = ["a cat", "the photo of a dog", "red bus on the road", "sky", "a b c", "photo", "cat the cat"]
TINY = "builtin:tiny-clip"


def _images():
    """Noise, solid colours and a gradient: a tiny random model embeds noise images almost alike."""
    rng = np.random.default_rng(0)
    out = [Image.fromarray(rng.integers(0, 256, (36 + 3 * i, 44, 3), dtype=np.uint8)) for i in range(3)]
    out += [Image.new("RGB", (40, 32), c) for c in ("red", "green", "blue")]
    ramp = np.linspace(0, 255, 40).astype(np.uint8)
    grid = [np.tile(ramp, (40, 1)), np.tile(ramp[:, None], (1, 40)), np.full((40, 40), 80, np.uint8)]
    return out + [Image.fromarray(np.stack(grid, -1))]


IMAGES = _images()


def _scorer(tmp_path, *, model=TINY, processor=TINY, batch_size=3, device="cpu"):
    return PickScorer(
        PickScoreConfig(model=model, processor=processor),
        run_dir=tmp_path,
        models_dir=tmp_path / "models",
        device=device,
        batch_size=batch_size,
        workers=1,
    )


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return Path(registry.location(TINY, models_dir=tmp_path_factory.mktemp("models")))


def _readme(path, images, captions, *, batch_size):
    """The PickScore README's steps (AutoProcessor, AutoModel, normalise, logit_scale.exp() * text @ image.T),
    on pairs in batches, keeping the diagonal; the last products in float64."""
    import torch
    from transformers import AutoModel, CLIPImageProcessorPil, CLIPProcessor, CLIPTokenizer

    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil.from_pretrained(path, local_files_only=True),
        tokenizer=CLIPTokenizer.from_pretrained(path, local_files_only=True),
    )
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            image_inputs = processor(images=images[start : start + batch_size], return_tensors="pt")
            text_inputs = processor(
                text=captions[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=77,
                return_tensors="pt",
            )
            image_embs = model.get_image_features(**image_inputs).pooler_output.double()
            image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
            text_embs = model.get_text_features(**text_inputs).pooler_output.double()
            text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
            scores = model.logit_scale.double().exp() * (text_embs @ image_embs.T)
            out.extend(scores.diagonal().tolist())
    return np.array(out), model.logit_scale.detach().exp().item()


def test_scores_equal_the_authors_computation(tmp_path, tiny_clip):
    got = _scorer(tmp_path, batch_size=3).score(IMAGES, CAPTIONS)
    assert list(got) == ["pickscore"]
    scores = got["pickscore"]
    assert scores.dtype == np.float64 and scores.shape == (len(CAPTIONS),)
    want, scale = _readme(tiny_clip, IMAGES, CAPTIONS, batch_size=3)
    assert np.abs(scores - want).max() < 1e-6
    # the tiny CLIP keeps CLIP's initial logit_scale, 2.6592 ~ log(1 / 0.07): scores are ~14.28 cosines
    assert scale == pytest.approx(np.exp(2.6592), rel=1e-6)
    assert len(set(np.round(scores, 3))) == len(CAPTIONS) and scores.min() < -1 and scores.max() > 1


def test_batch_size_does_not_change_scores_and_order_is_kept(tmp_path):
    # float32 towers give a row last-bit differences that depend on the batch; the scale (1 / 0.07) then
    # magnifies them, so the tolerance is 1e-6 on the cosine, as for the other scorers
    tol = 1e-6 / 0.07
    one = _scorer(tmp_path, batch_size=1).score(IMAGES, CAPTIONS)["pickscore"]
    three = _scorer(tmp_path, batch_size=3).score(IMAGES, CAPTIONS)["pickscore"]
    assert np.abs(one - three).max() < tol
    order = [6, 2, 0, 5, 3, 1, 4]
    shuffled = _scorer(tmp_path, batch_size=3).score([IMAGES[i] for i in order], [CAPTIONS[i] for i in order])
    assert np.abs(shuffled["pickscore"] - three[order]).max() < tol
    assert _scorer(tmp_path).score([], [])["pickscore"].shape == (0,)


def test_captions_are_cut_at_77_tokens(tmp_path):
    long_a = "a " * 100 + "cat"
    long_b = "a " * 100 + "red dog on the road"
    got = _scorer(tmp_path).score([IMAGES[3]] * 3, [long_a, long_b, "a cat"])["pickscore"]
    assert abs(got[0] - got[1]) < 1e-6  # they differ only past token 77
    assert abs(got[0] - got[2]) > 1e-3


def test_model_and_processor_resolve_separately(tmp_path, tiny_clip):
    by_name = _scorer(tmp_path).score(IMAGES, CAPTIONS)["pickscore"]
    mixed = _scorer(tmp_path, processor=str(tiny_clip)).score(IMAGES, CAPTIONS)["pickscore"]
    assert np.array_equal(by_name, mixed)
    assert scorer_class("pickscore") is PickScorer
    with pytest.raises(UserError, match="cannot load model 'no-such-org/no-such-processor'"):
        _scorer(tmp_path, processor="no-such-org/no-such-processor").score(IMAGES[:1], CAPTIONS[:1])
    with pytest.raises(UserError, match="cannot load model 'no-such-org/no-such-pickscore'"):
        _scorer(tmp_path, model="no-such-org/no-such-pickscore").score(IMAGES[:1], CAPTIONS[:1])


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="pair up"):
        _scorer(tmp_path).score(IMAGES[:2], CAPTIONS[:1])


@pytest.mark.gpu
def test_cuda_scores_in_float16_close_to_cpu(tmp_path):
    import torch

    cpu = _scorer(tmp_path).score(IMAGES, CAPTIONS)["pickscore"]
    cuda = _scorer(tmp_path, device="cuda")
    got = cuda.score(IMAGES, CAPTIONS)["pickscore"]
    assert cuda._load()[0].dtype == torch.float16
    assert np.abs(got - cpu).max() < 1e-2 / 0.07
