import numpy as np
import pytest
from PIL import Image

from synthvlm.models.builtin.clip import build_tiny_clip
from synthvlm.score.clip import ClipScorer, clip_score

CAPTIONS = ["a cat", "the photo of a dog", "red bus on the road", "sky", "a b c", "photo", "cat the cat"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "clip")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (36 + 3 * i, 44, 3), dtype=np.uint8))
        for i in range(len(CAPTIONS))
    ]


def _manual_cosines(path, images, texts):
    import torch
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
    tok = CLIPTokenizer.from_pretrained(path, local_files_only=True)
    proc = CLIPImageProcessorPil.from_pretrained(path, local_files_only=True)
    out = []
    with torch.no_grad():
        for image, text in zip(images, texts, strict=True):
            ids = tok([text], return_tensors="pt", truncation=True)
            pixels = proc(images=[image], return_tensors="pt")["pixel_values"]
            img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
            txt = model.text_projection(model.text_model(**ids).pooler_output)
            img = img / img.norm(dim=-1, keepdim=True)
            txt = txt / txt.norm(dim=-1, keepdim=True)
            out.append(float((img * txt).sum()))
    return np.array(out)


def test_cosines_equal_manual_computation(tiny_clip, images):
    got = ClipScorer(str(tiny_clip), batch_size=3).cosines(images, CAPTIONS)
    want = _manual_cosines(tiny_clip, images, ["A photo depicts " + c for c in CAPTIONS])
    assert got.dtype == np.float64 and got.shape == (len(CAPTIONS),)
    assert np.abs(got - want).max() < 1e-6
    # the random tiny model gives distinct, positive cosines: the comparison is not vacuous
    assert len(set(np.round(got, 6))) == len(CAPTIONS) and (got > 0).all()
    assert np.abs(ClipScorer(str(tiny_clip), batch_size=32).cosines(images, CAPTIONS) - got).max() < 1e-6


def test_preprocessing_on_threads_gives_the_same_pixels_and_cosines(tiny_clip, images):
    serial = ClipScorer(str(tiny_clip), batch_size=5)
    threaded = ClipScorer(str(tiny_clip), batch_size=5, workers=3)
    _, _, processor = serial._load()
    # 7 images on 3 threads: chunks of 3, 3, 1
    assert serial._pixel_values(processor, images).equal(threaded._pixel_values(processor, images))
    # batches of 5 and 2: chunks of 2, 2, 1, then 1, 1
    assert np.array_equal(threaded.cosines(images, CAPTIONS), serial.cosines(images, CAPTIONS))


def test_non_rgb_images_are_converted_as_the_processor_converts_pil(tiny_clip, images):
    rgba = images[0].convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(44, dtype=np.uint8) * 5, (36, 1))))
    odd = [rgba, images[1].convert("L"), images[2].convert("P")]
    got = ClipScorer(str(tiny_clip)).cosines(odd, CAPTIONS[:3])
    want = _manual_cosines(tiny_clip, odd, ["A photo depicts " + c for c in CAPTIONS[:3]])
    assert np.abs(got - want).max() < 1e-6
    plain = ClipScorer(str(tiny_clip)).cosines([images[0]], CAPTIONS[:1])
    assert abs(got[0] - plain[0]) > 1e-4  # the alpha composite onto white changed the pixels


def test_cosines_equal_torchmetrics(tiny_clip, images):
    import torch
    from torchmetrics.functional.multimodal import clip_score as tm_clip_score
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    model = CLIPModel.from_pretrained(tiny_clip, local_files_only=True).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil.from_pretrained(tiny_clip, local_files_only=True),
        tokenizer=CLIPTokenizer.from_pretrained(tiny_clip, local_files_only=True),
    )

    class Adapter(torch.nn.Module):
        """torchmetrics 1.9 expects tensors from get_*_features; transformers 5 returns output objects."""

        def __init__(self):
            super().__init__()
            self.clip = model
            self.config = model.config

        def get_image_features(self, pixel_values):
            return self.clip.get_image_features(pixel_values=pixel_values).pooler_output

        def get_text_features(self, input_ids, attention_mask):
            return self.clip.get_text_features(
                input_ids=input_ids, attention_mask=attention_mask
            ).pooler_output

    adapter = Adapter()
    ours = clip_score(ClipScorer(str(tiny_clip)).cosines(images, CAPTIONS))
    theirs = []
    with torch.no_grad():
        for image, caption in zip(images, CAPTIONS, strict=True):
            pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # uint8 CHW: no double rescale
            score = tm_clip_score(pixels, "A photo depicts " + caption, lambda: (adapter, processor))
            theirs.append(score.item() / 100)
    assert np.abs(ours - np.array(theirs)).max() < 1e-6


def test_long_captions_are_truncated(tiny_clip, images):
    long_a = "a " * 100 + "cat"
    long_b = "a " * 100 + "red dog on the road"
    got = ClipScorer(str(tiny_clip)).cosines([images[0]] * 3, [long_a, long_b, "a cat"])
    assert got[0] == got[1]  # they differ only past token 77
    assert got[0] != got[2]


def test_clip_score_clamps_negatives_exactly():
    got = clip_score(np.array([-0.5, -0.0, 0.0, 0.25, 1.0]))
    assert got.dtype == np.float64
    assert got.tolist() == [0.0, 0.0, 0.0, 0.25, 1.0]


def test_bad_input(tiny_clip, images):
    with pytest.raises(ValueError, match="pair up"):
        ClipScorer(str(tiny_clip)).cosines(images[:2], CAPTIONS[:1])
    with pytest.raises(ValueError, match="batch_size"):
        ClipScorer(str(tiny_clip), batch_size=0)


@pytest.mark.gpu
def test_cuda_scores_in_float16_close_to_cpu(tiny_clip, images):
    import torch

    cpu = ClipScorer(str(tiny_clip), device="cpu", batch_size=3).cosines(images, CAPTIONS)
    cuda = ClipScorer(str(tiny_clip), device="cuda", batch_size=3)
    got = cuda.cosines(images, CAPTIONS)
    assert cuda._load()[0].dtype == torch.float16
    assert np.abs(got - cpu).max() < 1e-2
