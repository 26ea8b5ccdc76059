"""Tiny CLIP tokenizer and CLIPModel built locally, so tests and the offline demo never touch the hub."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# A few merges so that BPE actually merges something in tests; each pair and its result stay in the vocab.
MERGES: tuple[tuple[str, str], ...] = (
    ("t", "h"),
    ("th", "e</w>"),
    ("o", "t"),
    ("p", "h"),
    ("ph", "ot"),
    ("phot", "o</w>"),
    ("a", "t</w>"),
    ("c", "at</w>"),
)
CLIP_DIMS = {"hidden": 32, "intermediate": 37, "layers": 2, "heads": 4, "projection": 32, "image": 30, "patch": 2}
_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
_CLIP_MARKER = "model.safetensors"


def _byte_chars() -> list[str]:
    """The 256 printable characters byte-level BPE uses for raw bytes, in CLIP's vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = [chr(b) for b in printable]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _write_text(path: Path, text: str) -> None:
    """Write UTF-8 text with "\n" newlines on every platform, so builds hash the same everywhere."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def build_clip_tokenizer(path: str | Path) -> Path:
    """Write a tiny CLIP BPE tokenizer into a fresh directory, for building tiny text encoders offline."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        # A stale added_tokens.json (or similar) left beside the files shifts special-token ids.
        raise ValueError(f"{path} is not empty; build the tokenizer into a fresh directory.")
    path.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(pair) for pair in MERGES] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    _write_text(path / "vocab.json", json.dumps(vocab, ensure_ascii=False) + "\n")
    _write_text(path / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
    }
    _write_text(path / "tokenizer_config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path
