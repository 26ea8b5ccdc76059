"""Tiny BLIP captioner (vision encoder + text decoder) with a local WordPiece tokenizer, for offline tests."""

from __future__ import annotations

import string
from pathlib import Path

from synthvlm.models.builtin.clip import _write_text, build_once, seeded
from synthvlm.models.builtin.lm import _BERT_SPECIAL, BLIP_DIMS, tiny_blip_config

_MARKER = "model.safetensors"
_WORDS = ("a", "dog", "cat", "the", "on", "of", "in", "man", "woman", "photo", "red", "street", "with", "and")


def build_tiny_blip_caption(path: str | Path) -> Path:
    """Build (once) a tiny random BlipForConditionalGeneration plus processor, for `from_pretrained`."""
    from transformers import (
        BertTokenizer,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    d = BLIP_DIMS

    def write(tmp: Path) -> None:
        pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
        vocab = [*_BERT_SPECIAL, *_WORDS, *pieces, *("##" + c for c in string.ascii_lowercase)]
        _write_text(tmp / "vocab.txt", "".join(f"{t}\n" for t in vocab))
        tokenizer = BertTokenizer(
            str(tmp / "vocab.txt"), do_lower_case=True, bos_token="[DEC]", model_max_length=35
        )
        processor = BlipProcessor(
            image_processor=BlipImageProcessorPil(size={"height": d["image"], "width": d["image"]}),
            tokenizer=tokenizer,
        )
        processor.save_pretrained(tmp)
        config = tiny_blip_config(len(vocab), eos_token_id=3)
        model = seeded(lambda: BlipForConditionalGeneration(config).eval())
        model.save_pretrained(tmp)

    return build_once(path, write, marker=_MARKER)
