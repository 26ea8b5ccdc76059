"""Tiny tokenizers for the text encoders of modern text-to-image pipelines, built locally with no hub access.

Each one is the model's own transformers class (T5Tokenizer, Qwen2Tokenizer, GemmaTokenizer,
CLIPTokenizer) built from a small vocabulary, so it keeps what the pipelines and a caller counting
tokens rely on: the pre-tokenization, the special tokens added around a text, the chat template where
the pipeline applies one, and the real tokenizer's `model_max_length`. The vocabularies are the byte
alphabet (or printable characters) plus whole-word pieces for the words of the pipelines' own prompt
templates, so those templates take as many tokens as with the real vocabularies: Qwen-Image drops a
fixed count of template tokens, which must then be exactly the template's.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from synthvlm.models.builtin.clip import build_clip_tokenizer

QWEN_IMAGE_SYSTEM = (
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships "
    "of the objects and background:"
)
"""The system prompt QwenImagePipeline wraps every prompt in (its `prompt_template_encode`)."""
_WORDS = (
    *(f" {w}" for w in QWEN_IMAGE_SYSTEM.replace(",", "").replace(":", "").split()[1:]),
    *(f" {w}" for w in ("a", "an", "cat", "dog", "photo", "red", "on", "in", "with", "street")),
)
"""Space-led words that are one token each (the rest of a text falls back to bytes or characters)."""
_QWEN_ROLE_WORDS = ("system", "user", "assistant", "Describe", "\n\n")
"""Words that follow a special token or a newline in Qwen templates, so they carry no leading space (and
the blank line of Qwen3's think block, one token in the real vocabulary)."""

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_VL_SPECIALS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
"""The vision tokens Qwen2.5-VL's config points at; text-only prompts never use them."""
QWEN3_THINK = ("<think>", "</think>")
"""Qwen3's reasoning markers: ordinary added tokens (not special) that its chat template writes."""
QWEN_MAX_LENGTH = 131072
"""`model_max_length` of the Qwen2.5-VL and Qwen3 tokenizers."""
T5_MAX_LENGTH = 512
"""`model_max_length` of the T5 v1.1 tokenizers; the pipelines pass their own `max_sequence_length`."""
GEMMA_MAX_LENGTH = 8192
"""Gemma 2's context length; SANA always passes its own `max_length`."""

QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
"""Qwen3's chat template for plain messages: the same text as the real one (which also handles tools and
reasoning history) for what FLUX.2-klein and Z-Image send, a single user turn with the generation prompt,
thinking switched off (klein) or left on (Z-Image)."""


def _chain_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Left-to-right BPE merges that build each word from its first symbol, in first-seen order.

    Every merge extends a prefix of a listed word, so each listed word becomes one token (the tests check
    the templates that depend on it); other text falls back to smaller pieces.
    """
    merges: dict[tuple[str, str], None] = {}
    for word in words:
        for i in range(1, len(word)):
            merges[(word[:i], word[i])] = None
    return list(merges)


def _byte_to_char() -> dict[int, str]:
    """GPT-2's byte-to-character map that byte-level BPE vocabularies are written in."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    rest = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(rest)}}


def _byte_level(text: str) -> str:
    """`text` in the byte-level BPE alphabet ("Ġ" for a space, "Ċ" for a newline)."""
    table = _byte_to_char()
    return "".join(table[b] for b in text.encode("utf-8"))


def t5_tokenizer(*, model_max_length: int = T5_MAX_LENGTH) -> Any:
    """A T5Tokenizer (Unigram, "▁" word boundaries, "</s>" appended) over characters and a few words."""
    from transformers import T5Tokenizer

    # Every piece scores the same, so the segmentation with the fewest pieces wins: whole words first.
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces = [
        "<pad>",
        "</s>",
        "<unk>",
        "▁",
        *chars,
        *(f"▁{c}" for c in chars),
        *(w.replace(" ", "▁") for w in _WORDS),
    ]
    return T5Tokenizer(
        vocab=[(p, -1.0) for p in dict.fromkeys(pieces)], extra_ids=0, model_max_length=model_max_length
    )


def qwen_tokenizer(
    *, extra_specials: tuple[str, ...] = (), added: tuple[str, ...] = (), chat_template: str | None = None
) -> Any:
    """A Qwen2Tokenizer (Qwen's pre-tokenizer regex, byte-level BPE) with Qwen's special tokens after the
    vocabulary, as in the real one; `added` are ordinary added tokens (Qwen3's think markers)."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    words = [_byte_level(w) for w in (*_QWEN_ROLE_WORDS, *_WORDS)]
    merges = _chain_merges(words)
    symbols = [*_byte_to_char().values(), *("".join(pair) for pair in merges)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(symbols))}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=QWEN_MAX_LENGTH,
    )
    tokenizer.add_tokens([AddedToken(t, special=True) for t in (*QWEN_SPECIALS, *extra_specials)])
    tokenizer.add_tokens([AddedToken(t, special=False) for t in added])
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def gemma_tokenizer() -> Any:
    """A GemmaTokenizer (BPE with byte fallback, "▁" for spaces, "<bos>" prepended, no "<eos>")."""
    from transformers import GemmaTokenizer

    specials = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    chars = ["▁", *(string.ascii_letters + string.digits + string.punctuation)]
    words = [w.replace(" ", "▁") for w in _WORDS]
    merges = _chain_merges(words)
    symbols = [*specials, *byte_tokens, *chars, *("".join(pair) for pair in merges)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(symbols))}
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, model_max_length=GEMMA_MAX_LENGTH)


def clip_tokenizer(scratch: Path, name: str) -> Any:
    """The tiny CLIP BPE tokenizer (`model_max_length` 77), built in `scratch / name`."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(build_clip_tokenizer(scratch / name))
