"""Tiny CLIP tokenizer and CLIPModel built locally, so tests and the offline demo never touch the hub."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

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
CLIP_DIMS = {
    "hidden": 32,
    "intermediate": 37,
    "layers": 2,
    "heads": 4,
    "projection": 32,
    "image": 30,
    "patch": 2,
}
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


def build_once(path: str | Path, write: Callable[[Path], None], *, marker: str) -> Path:
    """Run `write(folder)` on a fresh temporary sibling of `path`, then rename it onto `path`.

    `path` only ever appears by that rename, so a killed build never leaves half a model, and a `path`
    holding `marker` is returned untouched. Workers racing to build the same model all succeed: the
    rename of an identical loser fails and its copy is discarded.
    """
    path = Path(path)
    if (path / marker).is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        write(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the model dir is shared with workers
        try:
            os.replace(tmp, path)
        except OSError:
            if not (path / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def seeded(factory: Callable[[], T]) -> T:
    """`factory()` under torch seed 0 on a forked RNG: fixed weights, the caller's RNG state untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return factory()


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


def save_clip(path: Path, dims: dict[str, int], **text: int) -> None:
    """A seeded random CLIPModel of `dims` plus its PIL image processor; `text` sets text-config fields."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    common = {
        "hidden_size": dims["hidden"],
        "intermediate_size": dims["intermediate"],
        "num_hidden_layers": dims["layers"],
        "num_attention_heads": dims["heads"],
    }
    config = CLIPConfig(
        text_config={**common, **text},
        vision_config={**common, "image_size": dims["image"], "patch_size": dims["patch"]},
        projection_dim=dims["projection"],
    )
    seeded(lambda: CLIPModel(config).eval()).save_pretrained(path)
    size = dims["image"]
    CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    ).save_pretrained(path)


def build_tiny_clip(path: str | Path) -> Path:
    """Build (once) a tiny random CLIPModel with its processor files, so CLIPScore runs offline in tests."""

    def write(tmp: Path) -> None:
        tokenizer_dir = build_clip_tokenizer(tmp)
        vocab_size = len(json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8")))
        save_clip(
            tmp,
            CLIP_DIMS,
            vocab_size=vocab_size,
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )

    return build_once(path, write, marker=_CLIP_MARKER)
