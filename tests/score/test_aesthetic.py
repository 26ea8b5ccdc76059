"""The aesthetic scorer: the LAION MLP on the L2-normalised CLIP image embedding, its weights in every form
the config takes, the tiny builtin, the preflight's problems and a run through the score and select stages."""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthvlm import pipeline
from synthvlm.config import AESTHETIC_WEIGHTS, AestheticConfig, RunConfig, ScorersConfig, parse_config
from synthvlm.core import schema
from synthvlm.core.errors import UserError
from synthvlm.core.webdataset import iter_tar
from synthvlm.models import registry
from synthvlm.models.builtin.aesthetic import WEIGHTS_FILE, build_tiny_aesthetic, mlp
from synthvlm.preflight import preflight
from synthvlm.score.aesthetic import AestheticScorer
from synthvlm.score.pairs import SCORERS, scorer_class

CAPTIONS = ["a cat", "the photo of a dog", "red bus on the road", "sky", "a b c", "photo", "cat the cat"]
TINY = {"clip_model": "builtin:tiny-clip", "weights": "builtin:tiny-aesthetic"}
LINEAR = (0, 2, 4, 6, 7)
"""The state dict's Linear layers (1, 3 and 5 are dropout)."""


def _images():
    """Noise, solid colours and a gradient: a tiny random model embeds noise images almost alike."""
    rng = np.random.default_rng(0)
    out = [Image.fromarray(rng.integers(0, 256, (36 + 3 * i, 44, 3), dtype=np.uint8)) for i in range(3)]
    out += [Image.new("RGB", (40, 32), c) for c in ("red", "green", "blue")]
    ramp = np.linspace(0, 255, 40).astype(np.uint8)
    grid = [np.tile(ramp, (40, 1)), np.tile(ramp[:, None], (1, 40)), np.full((40, 40), 80, np.uint8)]
    return out + [Image.fromarray(np.stack(grid, -1))]


IMAGES = _images()


def _scorer(tmp_path, *, batch_size=3, device="cpu", **config):
    return AestheticScorer(
        AestheticConfig(**{**TINY, **config}),
        run_dir=tmp_path,
        models_dir=tmp_path / "models",
        device=device,
        batch_size=batch_size,
        workers=1,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(tiny CLIP folder, tiny aesthetic folder), built once."""
    models = tmp_path_factory.mktemp("models")
    return (
        Path(registry.location("builtin:tiny-clip", models_dir=models)),
        Path(registry.location("builtin:tiny-aesthetic", models_dir=models)),
    )


def _by_hand(clip_dir, weights_dir, images):
    """Each image alone: CLIP's projected image embedding, divided by its L2 norm, then W x + b for each of
    the five Linear layers, in float64 numpy."""
    import torch
    from safetensors.numpy import load_file
    from transformers import CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    processor = CLIPImageProcessorPil.from_pretrained(clip_dir, local_files_only=True)
    state = {k: v.astype(np.float64) for k, v in load_file(weights_dir / WEIGHTS_FILE).items()}
    out = []
    with torch.no_grad():
        for image in images:
            pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
            x = model.get_image_features(pixel_values=pixels).pooler_output[0].double().numpy()
            x = x / np.sqrt((x * x).sum())
            for i in LINEAR:
                x = state[f"layers.{i}.weight"] @ x + state[f"layers.{i}.bias"]
            assert x.shape == (1,)
            out.append(x[0])
    return np.array(out)


def test_scores_equal_a_step_by_step_computation(tmp_path, tiny):
    got = _scorer(tmp_path).score(IMAGES, CAPTIONS)
    assert list(got) == ["aesthetic"]
    scores = got["aesthetic"]
    assert scores.dtype == np.float64 and scores.shape == (len(IMAGES),)
    want = _by_hand(*tiny, IMAGES)
    assert np.abs(scores - want).max() <= 1e-6
    # distinct values well apart from the tolerance: the comparison is not vacuous
    assert len(set(np.round(scores, 4))) == len(IMAGES)
    assert scores.max() - scores.min() > 1e-3


def test_scores_equal_the_authors_float32_module(tmp_path, tiny):
    """The authors' `simple_inference.py`: numpy L2 normalisation, then their Sequential in float32."""
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPImageProcessorPil, CLIPModel

    clip_dir, weights_dir = tiny
    model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    processor = CLIPImageProcessorPil.from_pretrained(clip_dir, local_files_only=True)
    head = torch.nn.Sequential(
        torch.nn.Linear(32, 1024),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(1024, 128),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 1),
    )
    state = load_file(weights_dir / WEIGHTS_FILE)
    head.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
    with torch.no_grad():
        pixels = processor(images=IMAGES, return_tensors="pt")["pixel_values"]
        emb = model.get_image_features(pixel_values=pixels).pooler_output.numpy()
        emb = emb / np.expand_dims(np.linalg.norm(emb, 2, -1), -1)
        want = head.eval()(torch.from_numpy(emb).float())[:, 0].double().numpy()
    got = _scorer(tmp_path, batch_size=len(IMAGES)).score(IMAGES, CAPTIONS)["aesthetic"]
    assert np.abs(got - want).max() <= 1e-6


def test_batch_size_does_not_change_scores_and_order_is_kept(tmp_path):
    one = _scorer(tmp_path, batch_size=1).score(IMAGES, CAPTIONS)["aesthetic"]
    three = _scorer(tmp_path, batch_size=3).score(IMAGES, CAPTIONS)["aesthetic"]
    assert np.abs(one - three).max() <= 1e-6
    order = [6, 2, 0, 5, 3, 1, 4]
    shuffled = _scorer(tmp_path).score([IMAGES[i] for i in order], [CAPTIONS[i] for i in order])["aesthetic"]
    assert np.abs(shuffled - three[order]).max() <= 1e-6
    assert _scorer(tmp_path).score([], [])["aesthetic"].shape == (0,)


def test_deterministic_and_captions_do_not_enter(tmp_path):
    first = _scorer(tmp_path).score(IMAGES, CAPTIONS)["aesthetic"]
    again = _scorer(tmp_path).score(IMAGES, CAPTIONS)["aesthetic"]
    other_captions = _scorer(tmp_path).score(IMAGES, [""] * len(IMAGES))["aesthetic"]
    assert np.array_equal(first, again) and np.array_equal(first, other_captions)


def test_every_form_of_weights_scores_the_same(tmp_path, tiny, monkeypatch):
    import torch
    from huggingface_hub import constants
    from safetensors.torch import load_file

    _, weights_dir = tiny
    want = _scorer(tmp_path).score(IMAGES, CAPTIONS)["aesthetic"]
    # a torch .pth as the authors ship it (an OrderedDict of tensors)
    pth = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(load_file(weights_dir / WEIGHTS_FILE), pth)
    # the same file in the HF cache, named REPO_ID/FILENAME (offline: read from the cache)
    hub = tmp_path / "hub"
    snapshot = hub / "models--org--aesthetic" / "snapshots" / "c0ffee"
    snapshot.mkdir(parents=True)
    (hub / "models--org--aesthetic" / "refs").mkdir()
    (hub / "models--org--aesthetic" / "refs" / "main").write_text("c0ffee")
    (snapshot / "weights").mkdir()
    (snapshot / "weights" / pth.name).write_bytes(pth.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    for weights in (
        str(pth),
        str(weights_dir / WEIGHTS_FILE),
        str(weights_dir),
        f"org/aesthetic/weights/{pth.name}",
    ):
        assert np.array_equal(_scorer(tmp_path, weights=weights).score(IMAGES, CAPTIONS)["aesthetic"], want)
    assert registry.hub_file(f"org/aesthetic/weights/{pth.name}") == ("org/aesthetic", f"weights/{pth.name}")
    assert registry.hub_file(AESTHETIC_WEIGHTS) == (
        "camenduru/improved-aesthetic-predictor",
        "sac+logos+ava1-l14-linearMSE.pth",
    )


def test_weights_that_cannot_be_used_are_one_line_errors(tmp_path, tiny):
    import torch
    from safetensors.torch import save_file

    def error(**config) -> str:
        with pytest.raises(UserError) as info:
            _scorer(tmp_path, **config).score(IMAGES[:1], CAPTIONS[:1])
        return str(info.value)

    assert error(weights="org/not-cached/aes.pth").startswith("cannot load model 'org/not-cached/aes.pth': ")
    assert error(weights="no-such.pth") == (
        "cannot load model 'no-such.pth': 'no-such.pth' is neither a local file nor a hub file given as "
        "REPO_ID/FILENAME"
    )
    assert error(weights="builtin:tiny-nope").startswith("unknown builtin model 'builtin:tiny-nope'; valid: ")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    assert error(weights=str(junk)) == (
        f"cannot load model '{junk}': {junk} is not a torch state dict of tensors (Unsupported operand 110)"
    )
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), tensor)
    assert error(weights=str(tensor)) == (
        f"cannot load model '{tensor}': {tensor} is not a torch state dict of tensors (it holds a Tensor)"
    )
    other = tmp_path / "other.safetensors"
    save_file({"linear.weight": torch.zeros(1, 32)}, str(other))
    assert error(weights=str(other)) == (
        f"cannot load model '{other}': {other} has no 2-d layers.0.weight: not the aesthetic predictor's MLP"
    )
    extra = tmp_path / "extra.safetensors"
    save_file({**mlp(32).state_dict(), "layers.8.weight": torch.zeros(1)}, str(extra))
    assert error(weights=str(extra)) == (
        f"cannot load model '{extra}': {extra}: Error(s) in loading state_dict for ModuleDict: Unexpected "
        'key(s) in state_dict: "layers.8.weight".'
    )
    wide = tmp_path / "wide.safetensors"
    save_file(mlp(768).state_dict(), str(wide))
    assert error(weights=str(wide)) == (
        f"score.scorers.aesthetic: the weights '{wide}' read 768-d image embeddings but 'builtin:tiny-clip' "
        "gives 32-d ones; pair them with the CLIP model they were trained on (the LAION weights: "
        "openai/clip-vit-large-patch14)"
    )
    with pytest.raises(ValueError, match="pair up"):
        _scorer(tmp_path).score(IMAGES[:2], CAPTIONS[:1])


@pytest.mark.gpu
def test_cuda_scores_with_a_float16_tower_close_to_cpu(tmp_path):
    import torch

    cpu = _scorer(tmp_path).score(IMAGES, CAPTIONS)["aesthetic"]
    cuda = _scorer(tmp_path, device="cuda")
    got = cuda.score(IMAGES, CAPTIONS)["aesthetic"]
    model, _, head = cuda._load()
    assert model.dtype == torch.float16 and head[0].weight.dtype == torch.float64
    # the tiny MLP maps embedding differences down (its layers' product has norm ~0.07): the tower's fp16
    # rounding moves scores by far less than their spread of ~1e-2
    assert np.abs(got - cpu).max() < 1e-3


def _digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_tiny_aesthetic_builds_byte_identically_with_the_predictors_layers(tmp_path):
    import torch
    from safetensors.torch import load_file

    before = torch.random.get_rng_state()
    a = build_tiny_aesthetic(tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_tiny_aesthetic(tmp_path / "b")
    assert _digests(a) == _digests(b) and list(_digests(a)) == [WEIGHTS_FILE]
    assert build_tiny_aesthetic(a) == a  # built once: a second call reuses the folder
    shapes = {k: tuple(v.shape) for k, v in load_file(a / WEIGHTS_FILE).items()}
    assert shapes == {
        "layers.0.weight": (1024, 32),
        "layers.0.bias": (1024,),
        "layers.2.weight": (128, 1024),
        "layers.2.bias": (128,),
        "layers.4.weight": (64, 128),
        "layers.4.bias": (64,),
        "layers.6.weight": (16, 64),
        "layers.6.bias": (16,),
        "layers.7.weight": (1, 16),
        "layers.7.bias": (1,),
    }
    assert (a / WEIGHTS_FILE).stat().st_size < 1_000_000
    # the real predictor's layout: the same keys, 768-d input
    assert {k: tuple(v.shape) for k, v in mlp(768).state_dict().items()} == {
        **shapes,
        "layers.0.weight": (1024, 768),
    }


def test_registries_name_the_scorer_once_each():
    assert scorer_class("aesthetic") is AestheticScorer
    assert list(SCORERS) == list(schema.SCORER_COLUMNS) == list(ScorersConfig.model_fields)
    assert schema.score_columns(["aesthetic"]) == ["clip", "ssim", "weighted", "aesthetic"]
    assert schema.score_schema(["nsfw", "aesthetic"]).names[-3:] == ["nsfw", "nsfw_margin", "aesthetic"]
    # off, it is left out of dumps: score fingerprints of runs with other scorers stay as they were
    assert "aesthetic" not in ScorersConfig(nsfw={}).model_dump()
    assert ScorersConfig(aesthetic={}).model_dump()["aesthetic"] == {
        "clip_model": "openai/clip-vit-large-patch14",
        "clip_revision": None,
        "weights": AESTHETIC_WEIGHTS,
    }


def test_select_key_aesthetic_needs_the_scorer():
    config = parse_config(
        {"score": {"scorers": {"aesthetic": TINY}}, "select": {"key": "aesthetic"}}, origin="r"
    )
    assert config.select.key == "aesthetic"
    with pytest.raises(UserError, match="select.key names aesthetic, which this run does not score"):
        parse_config({"select": {"key": {"clip": 1.0, "aesthetic": 0.1}}}, origin="r")


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty HF cache (offline, as tests/conftest.py sets)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    return tmp_path / "hf-home" / "hub"


def _problems(tmp_path, aesthetic) -> list[str]:
    config = parse_config(
        {"score": {"clip_model": "builtin:tiny-clip", "scorers": {"aesthetic": aesthetic}}}, origin="r"
    )
    return [
        str(p)
        for p in preflight(config, run_dir=tmp_path / "run", stages=["score"], executor="local").problems
    ]


def test_preflight_names_what_is_missing_and_the_offline_stand_ins(tmp_path, hub):
    clip, (repo, filename) = "openai/clip-vit-large-patch14", registry.hub_file(AESTHETIC_WEIGHTS)
    where = f"nor in the Hugging Face cache ({hub}), and offline mode is on"
    assert _problems(tmp_path, {}) == [
        f"score.scorers.aesthetic.clip_model {clip!r} is not a local folder {where}: `hf download {clip}`, "
        "or `score.scorers.aesthetic.clip_model: builtin:tiny-clip` for an offline try",
        f"score.scorers.aesthetic.weights {AESTHETIC_WEIGHTS!r} is not a local file {where}: `hf download "
        f"{repo} {filename}`, or `score.scorers.aesthetic.weights: builtin:tiny-aesthetic` for an offline "
        "try",
    ]
    missing = tmp_path / "nowhere" / "aes.pth"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _problems(tmp_path, {**TINY, "weights": str(missing)}) == [
        f"score.scorers.aesthetic.weights {missing}: no such file: fix the path, or name a hub file as "
        "REPO_ID/FILENAME"
    ]
    assert _problems(tmp_path, {**TINY, "weights": str(empty)}) == [
        f"score.scorers.aesthetic.weights folder {empty} has no model.safetensors: point it at a complete "
        "model folder (what `save_pretrained` writes, or `hf download REPO --local-dir DIR`)"
    ]
    assert _problems(tmp_path, {**TINY, "weights": "builtin:tiny-nope"})[0].startswith(
        "score.scorers.aesthetic.weights: unknown builtin model 'builtin:tiny-nope'; valid: "
        "builtin:tiny-aesthetic, "
    )
    # present: a local file, a hub file in the cache, the builtin (never built by the preflight)
    (tmp_path / "aes.pth").write_bytes(b"")
    cached = hub / "models--org--aes"
    (cached / "snapshots" / "c0ffee").mkdir(parents=True)
    (cached / "snapshots" / "c0ffee" / "aes.pth").write_bytes(b"")
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text("c0ffee")
    for weights in (str(tmp_path / "aes.pth"), "org/aes/aes.pth", "builtin:tiny-aesthetic"):
        assert _problems(tmp_path, {**TINY, "weights": weights}) == []
    assert not (tmp_path / "run").exists()


def _config(captions: Path, **select) -> RunConfig:
    return RunConfig.model_validate(
        {
            "ingest": {"inputs": [str(captions)]},
            "curate": {"recipe": "none", "dedup": False},
            "generate": {
                "preset": "tiny",
                "images_per_shard": 4,
                "batch_size": 4,
                "candidates_per_caption": 2,
            },
            "score": {
                "clip_model": "builtin:tiny-clip",
                "ssim_size": 64,
                "ssim_low": 28,
                "batch_size": 3,
                "scorers": {"aesthetic": TINY},
            },
            "select": {"key": "aesthetic", **select},
        }
    )


def test_the_score_stage_writes_the_column_and_select_ranks_by_it(tmp_path):
    captions = tmp_path / "c.jsonl"
    words = ["red", "blue", "green", "small"]
    captions.write_text(
        "".join(json.dumps({"id": f"c{i}", "caption": f"a {w} bus"}) + "\n" for i, w in enumerate(words))
    )
    run = tmp_path / "run"
    config = _config(captions, top_k=3)
    pipeline.run(run, config, stages=["ingest", "curate", "generate", "score", "select"], progress=False)
    scored = pq.read_table(run / "score" / "data")
    assert scored.schema.names[-4:] == ["clip", "ssim", "weighted", "aesthetic"]
    assert scored.num_rows == 8
    # the stage's column is the scorer's own scores of the images as stored, in its batches
    images = {}
    for tar in sorted((run / "generate" / "images").glob("*.tar")):
        images.update(iter_tar(tar, set(scored.column("image_name").to_pylist())))
    rows = scored.to_pylist()
    direct = []
    for shard in sorted({r["image_shard"] for r in rows}):
        batch = [r for r in rows if r["image_shard"] == shard]
        pics = [Image.open(io.BytesIO(images[r["image_name"]])).convert("RGB") for r in batch]
        direct += list(
            _scorer(tmp_path, batch_size=3).score(pics, [r["caption"] for r in batch])["aesthetic"]
        )
    assert np.array_equal(scored.column("aesthetic").to_numpy(), np.array(direct))
    # select: each caption's best candidate by aesthetic, then the 3 best of those
    best = {}
    for r in rows:
        if r["caption_id"] not in best or r["aesthetic"] > best[r["caption_id"]]["aesthetic"]:
            best[r["caption_id"]] = r
    want = sorted(best.values(), key=lambda r: -r["aesthetic"])[:3]
    selected = pq.read_table(run / "select" / "data").to_pylist()
    assert [r["key"] for r in selected] == [r["key"] for r in want]
    assert selected[-1]["cutoff"] == want[-1]["aesthetic"]
