import hashlib
from pathlib import Path

import pytest

from synthvlm.models.builtin.clip import build_clip_tokenizer, build_tiny_clip


def _digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_tokenizer_ids_and_length(tmp_path):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(build_clip_tokenizer(tmp_path / "tok"), local_files_only=True)
    assert tok.model_max_length == 77
    assert len(tok) == 522
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (520, 521, 521)
    ids = tok("A photo of the cat!").input_ids
    assert ids == [520, 320, 517, 78, 325, 513, 519, 256, 521]
    assert tok.convert_ids_to_tokens(ids[1:8]) == [
        "a</w>",
        "photo</w>",
        "o",
        "f</w>",
        "the</w>",
        "cat</w>",
        "!</w>",
    ]
    assert len(tok("x " * 200, truncation=True).input_ids) == 77


def test_tokenizer_build_is_byte_deterministic(tmp_path):
    a = _digests(build_clip_tokenizer(tmp_path / "a"))
    b = _digests(build_clip_tokenizer(tmp_path / "b"))
    assert sorted(a) == ["merges.txt", "tokenizer_config.json", "vocab.json"]
    assert a == b


def test_tokenizer_refuses_non_empty_dir(tmp_path):
    (tmp_path / "added_tokens.json").write_text("{}")
    with pytest.raises(ValueError, match="not empty"):
        build_clip_tokenizer(tmp_path)


def test_tiny_clip_deterministic_loadable_and_reused(tmp_path):
    import torch
    from transformers import CLIPImageProcessorPil, CLIPModel

    before = torch.random.get_rng_state()
    a = build_tiny_clip(tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_tiny_clip(tmp_path / "b")
    assert _digests(a) == _digests(b)
    assert sorted(_digests(a)) == [
        "config.json",
        "merges.txt",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temp dirs left behind

    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_clip(a) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp

    model = CLIPModel.from_pretrained(a, local_files_only=True, use_safetensors=True)
    assert model.config.projection_dim == 32
    assert model.config.vision_config.image_size == 30
    assert sum(p.numel() for p in model.parameters()) == 56213
    assert CLIPImageProcessorPil.from_pretrained(a, local_files_only=True).crop_size == {
        "height": 30,
        "width": 30,
    }
