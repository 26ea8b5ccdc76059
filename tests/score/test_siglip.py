import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthvlm.config import SiglipScorerConfig
from synthvlm.core.errors import UserError
from synthvlm.models import registry
from synthvlm.models.builtin.siglip import LOGIT_BIAS, LOGIT_SCALE, build_tiny_siglip
from synthvlm.score.pairs import scorer_class
from synthvlm.score.siglip import SiglipScorer

CAPTIONS = ["a cat", "the photo of a dog", "red bus on the road", "sky", "a b c", "photo", "cat the cat"]


def _images():
    """Noise, solid colours and a gradient: a tiny random model embeds noise images almost alike."""
    rng = np.random.default_rng(0)
    out = [Image.fromarray(rng.integers(0, 256, (36 + 3 * i, 44, 3), dtype=np.uint8)) for i in range(3)]
    out += [Image.new("RGB", (40, 32), c) for c in ("red", "green", "blue")]
    ramp = np.linspace(0, 255, 40).astype(np.uint8)
    grid = [np.tile(ramp, (40, 1)), np.tile(ramp[:, None], (1, 40)), np.full((40, 40), 80, np.uint8)]
    return out + [Image.fromarray(np.stack(grid, -1))]


IMAGES = _images()


def _scorer(tmp_path, *, model="builtin:tiny-siglip", batch_size=3, device="cpu"):
    return SiglipScorer(
        SiglipScorerConfig(model=model),
        run_dir=tmp_path,
        models_dir=tmp_path / "models",
        device=device,
        batch_size=batch_size,
        workers=1,
    )


def _manual(path, images, captions, *, mask=False):
    """Each pair alone, from the model's pieces: towers, L2 norm, scale and bias, sigmoid in float64."""
    import torch
    from transformers import AutoTokenizer, SiglipImageProcessorPil, SiglipModel

    model = SiglipModel.from_pretrained(path, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    proc = SiglipImageProcessorPil.from_pretrained(path, local_files_only=True)
    out = []
    with torch.no_grad():
        for image, caption in zip(images, captions, strict=True):
            text = tok([caption], padding="max_length", max_length=16, truncation=True, return_tensors="pt")
            pixels = proc(images=[image], return_tensors="pt")["pixel_values"]
            img = model.vision_model(pixel_values=pixels).pooler_output[0].double().numpy()
            kwargs = {"attention_mask": text["attention_mask"]} if mask else {}
            txt = model.text_model(input_ids=text["input_ids"], **kwargs).pooler_output[0].double().numpy()
            cos = img @ txt / np.linalg.norm(img) / np.linalg.norm(txt)
            logit = np.exp(model.logit_scale.double().item()) * cos + model.logit_bias.double().item()
            out.append(1 / (1 + np.exp(-logit)))
    return np.array(out)


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory):
    return Path(registry.location("builtin:tiny-siglip", models_dir=tmp_path_factory.mktemp("models")))


def test_scores_equal_step_by_step_computation(tmp_path, tiny_siglip):
    got = _scorer(tmp_path, batch_size=3).score(IMAGES, CAPTIONS)
    assert list(got) == ["siglip"]
    scores = got["siglip"]
    assert scores.dtype == np.float64 and scores.shape == (len(CAPTIONS),)
    assert np.abs(scores - _manual(tiny_siglip, IMAGES, CAPTIONS)).max() < 1e-6
    # distinct probabilities well inside (0, 1): the comparison is not vacuous
    assert len(set(np.round(scores, 4))) == len(CAPTIONS)
    assert 0.1 < scores.min() and scores.max() < 0.4
    # SigLIP's text embedding attends the pads; a masked one differs, so the choice is visible here
    assert np.abs(scores - _manual(tiny_siglip, IMAGES, CAPTIONS, mask=True)).min() > 1e-4


def test_scores_equal_the_models_own_pair_logits(tmp_path, tiny_siglip):
    import torch
    from transformers import AutoProcessor, SiglipModel

    model = SiglipModel.from_pretrained(tiny_siglip, local_files_only=True).eval()
    assert (model.logit_scale.item(), model.logit_bias.item()) == pytest.approx((LOGIT_SCALE, LOGIT_BIAS))
    processor = AutoProcessor.from_pretrained(tiny_siglip, local_files_only=True)
    inputs = processor(text=CAPTIONS, images=IMAGES, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"]).logits_per_image
    want = torch.sigmoid(logits.diagonal().double()).numpy()
    got = _scorer(tmp_path, batch_size=len(CAPTIONS)).score(IMAGES, CAPTIONS)["siglip"]
    assert np.abs(got - want).max() < 1e-6


def test_batch_size_does_not_change_scores_and_order_is_kept(tmp_path):
    one = _scorer(tmp_path, batch_size=1).score(IMAGES, CAPTIONS)["siglip"]
    three = _scorer(tmp_path, batch_size=3).score(IMAGES, CAPTIONS)["siglip"]
    assert np.abs(one - three).max() < 1e-6
    order = [6, 2, 0, 5, 3, 1, 4]
    shuffled = _scorer(tmp_path, batch_size=3).score([IMAGES[i] for i in order], [CAPTIONS[i] for i in order])
    assert np.abs(shuffled["siglip"] - three[order]).max() < 1e-6
    assert _scorer(tmp_path).score([], [])["siglip"].shape == (0,)


def test_captions_are_cut_at_the_text_models_length(tmp_path):
    long_a = "a " * 30 + "cat"
    long_b = "a " * 30 + "red dog on the road"
    got = _scorer(tmp_path).score([IMAGES[3]] * 3, [long_a, long_b, "a cat"])["siglip"]
    # they differ only past token 16 (equal ids; the rows' float32 paths may differ in the last bits)
    assert abs(got[0] - got[1]) < 1e-6
    assert abs(got[0] - got[2]) > 1e-4


def test_folder_and_builtin_name_score_the_same(tmp_path, tiny_siglip):
    by_name = _scorer(tmp_path).score(IMAGES, CAPTIONS)["siglip"]
    by_folder = _scorer(tmp_path, model=str(tiny_siglip)).score(IMAGES, CAPTIONS)["siglip"]
    assert np.array_equal(by_name, by_folder)
    assert scorer_class("siglip") is SiglipScorer


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="pair up"):
        _scorer(tmp_path).score(IMAGES[:2], CAPTIONS[:1])
    with pytest.raises(UserError, match="cannot load model 'no-such-org/no-such-siglip'"):
        _scorer(tmp_path, model="no-such-org/no-such-siglip").score(IMAGES[:1], CAPTIONS[:1])


def test_a_sentencepiece_tokenizer_without_sentencepiece_is_a_user_error(
    tmp_path, tiny_siglip, monkeypatch, request
):
    import importlib.util
    import shutil

    from transformers.utils import import_utils

    real = importlib.util.find_spec
    # As on a machine without it (the models extra installs it): transformers looks it up by find_spec,
    # once, so its cached answer is cleared before and after.
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sentencepiece" else real(name, *a)
    )
    import_utils.is_sentencepiece_available.cache_clear()
    request.addfinalizer(import_utils.is_sentencepiece_available.cache_clear)
    # a hub SigLIP checkpoint's layout: spiece.model and a SiglipTokenizer config, no tokenizer.json
    folder = tmp_path / "hub-like"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(tiny_siglip / name, folder / name)
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "SiglipTokenizer"}')
    (folder / "spiece.model").write_bytes(b"")
    with pytest.raises(
        UserError,
        match=r"installed \(SiglipTokenizer requires the SentencePiece library\); pip install sentencepiece",
    ):
        _scorer(tmp_path, model=str(folder)).score(IMAGES[:1], CAPTIONS[:1])


def _digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_tiny_siglip_build_is_deterministic_small_and_loads_like_a_hub_checkpoint(tmp_path):
    import torch
    from transformers import AutoTokenizer

    before = torch.random.get_rng_state()
    a = build_tiny_siglip(tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_tiny_siglip(tmp_path / "b")
    assert _digests(a) == _digests(b)
    assert sorted(_digests(a)) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert sum(p.stat().st_size for p in a.iterdir()) < 1_000_000
    tok = AutoTokenizer.from_pretrained(a, local_files_only=True)
    ids = tok("A photo of the cat!", padding="max_length", max_length=16)["input_ids"]
    # whole-word pieces, <unk> for "!", then "</s>" (id 1) ends the text and pads it
    assert tok.convert_ids_to_tokens(ids[:7]) == ["▁a", "▁photo", "▁of", "▁the", "▁cat", "<unk>", "</s>"]
    assert ids[6:] == [1] * 10
    assert build_tiny_siglip(a) == a  # built once: a second call reuses the folder


@pytest.mark.gpu
def test_cuda_scores_in_float16_close_to_cpu(tmp_path):
    import torch

    cpu = _scorer(tmp_path).score(IMAGES, CAPTIONS)["siglip"]
    cuda = _scorer(tmp_path, device="cuda")
    got = cuda.score(IMAGES, CAPTIONS)["siglip"]
    assert cuda._load()[0].dtype == torch.float16
    assert np.abs(got - cpu).max() < 1e-2
