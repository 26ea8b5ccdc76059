"""Tiny GPT-2 causal LM with a locally built byte-level BPE tokenizer, so curation's LM steps run offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthvlm.models.builtin.clip import _byte_chars, _write_text, build_once, seeded

EOS = "<|endoftext|>"
# Merges so that "Yes" and "No" are single tokens: the judge tests steer a model to one of them.
MERGES: tuple[tuple[str, str], ...] = (
    ("Y", "e"),
    ("Ye", "s"),
    ("N", "o"),
    ("Ġ", "a"),
    ("Ġ", "d"),
    ("Ġd", "o"),
    ("Ġdo", "g"),
)
LM_DIMS = {"embd": 32, "layers": 2, "heads": 4, "positions": 1024}
_MARKER = "model.safetensors"


def build_lm_tokenizer(path: str | Path) -> Path:
    """Write a tiny GPT-2 byte-level BPE tokenizer into a fresh directory."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise ValueError(f"{path} is not empty; build the tokenizer into a fresh directory.")
    path.mkdir(parents=True, exist_ok=True)
    tokens = _byte_chars() + ["".join(pair) for pair in MERGES] + [EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    _write_text(path / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    _write_text(path / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": LM_DIMS["positions"],
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "add_prefix_space": False,
    }
    _write_text(path / "tokenizer_config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def build_tiny_lm(path: str | Path) -> Path:
    """Build (once) a tiny random GPT2LMHeadModel plus tokenizer; loads with `from_pretrained(path)`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    d = LM_DIMS

    def write(tmp: Path) -> None:
        build_lm_tokenizer(tmp)
        vocab_size = len(json.loads((tmp / "vocab.json").read_text(encoding="utf-8")))
        config = GPT2Config(
            vocab_size=vocab_size,
            n_positions=d["positions"],
            n_embd=d["embd"],
            n_layer=d["layers"],
            n_head=d["heads"],
            bos_token_id=vocab_size - 1,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
        model = seeded(lambda: GPT2LMHeadModel(config).eval())
        model.save_pretrained(tmp)

    return build_once(path, write, marker=_MARKER)


BLIP_DIMS = {"hidden": 32, "intermediate": 37, "layers": 2, "heads": 4, "image": 32, "patch": 8}
_BERT_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]")


def tiny_blip_config(vocab_size: int, **text: int) -> Any:
    """BlipConfig at BLIP_DIMS for a WordPiece vocabulary of `vocab_size`; `text` adds text-config ids."""
    from transformers import BlipConfig

    d = BLIP_DIMS
    common = {
        "hidden_size": d["hidden"],
        "intermediate_size": d["intermediate"],
        "num_hidden_layers": d["layers"],
        "num_attention_heads": d["heads"],
    }
    return BlipConfig(
        text_config={
            **common,
            "vocab_size": vocab_size,
            "encoder_hidden_size": d["hidden"],
            "max_position_embeddings": 64,
            "pad_token_id": 0,
            "bos_token_id": 5,
            "sep_token_id": 3,
            **text,
        },
        vision_config={**common, "image_size": d["image"], "patch_size": d["patch"]},
        projection_dim=d["hidden"],
        image_text_hidden_size=d["hidden"],
    )


def build_tiny_blip_itm(path: str | Path) -> Path:
    """Build (once) a tiny random BlipForImageTextRetrieval with a WordPiece tokenizer and image processor."""
    import string

    from transformers import BertTokenizer, BlipForImageTextRetrieval, BlipImageProcessorPil

    d = BLIP_DIMS

    def write(tmp: Path) -> None:
        words = ["a", "dog", "cat", "the", "on", "of", "in", "man", "woman", "photo", "red", "street"]
        pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
        vocab = [*_BERT_SPECIAL, *words, *pieces, *("##" + c for c in string.ascii_lowercase + string.digits)]
        _write_text(tmp / "vocab.txt", "".join(f"{t}\n" for t in vocab))
        tokenizer = BertTokenizer(
            str(tmp / "vocab.txt"), do_lower_case=True, bos_token="[DEC]", model_max_length=35
        )
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        tokenizer.enc_token_id = tokenizer.convert_tokens_to_ids("[ENC]")
        tokenizer.save_pretrained(tmp)
        config = tiny_blip_config(len(vocab))
        model = seeded(lambda: BlipForImageTextRetrieval(config).eval())
        model.save_pretrained(tmp)
        BlipImageProcessorPil(size={"height": d["image"], "width": d["image"]}).save_pretrained(tmp)

    return build_once(path, write, marker=_MARKER)
