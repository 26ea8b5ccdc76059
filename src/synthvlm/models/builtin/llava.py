"""Tiny LLaVA parts built locally (CLIP vision tower, Llama-architecture LM, byte tokenizer with `<image>`).

Training tests assemble them through the same path as the real parts (openai/clip-vit-large-patch14-336 and
lmsys/vicuna-7b-v1.5): two folders loaded with `from_pretrained`, so nothing here is a mock.
"""

from __future__ import annotations

import json
from pathlib import Path

from synthvlm.models.builtin.clip import build_once, save_clip, seeded

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN)
LM_DIMS = {"hidden": 32, "intermediate": 37, "layers": 2, "heads": 4, "max_positions": 2048}
# 30 px images in 6 px patches: 25 image tokens, so a CPU training step stays well under a second.
VISION_DIMS = {
    "hidden": 32,
    "intermediate": 37,
    "layers": 2,
    "heads": 4,
    "projection": 32,
    "image": 30,
    "patch": 6,
}
_DONE = "tiny_llava.json"


def _byte_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """Byte-level BPE without merges: every UTF-8 byte is one token, so any caption round-trips exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *byte_chars])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    # Llama-style: BOS in front, no EOS (LLaVA's plain template adds none either).
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_max_length=LM_DIMS["max_positions"],
        padding_side="right",
    )


def _save_tiny_clip(path: Path) -> None:
    """A whole CLIPModel checkpoint plus image processor, laid out like openai/clip-vit-large-patch14-336."""
    save_clip(path, VISION_DIMS, vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1)


def build_tiny_llava(path: str | Path) -> Path:
    """Build (once) `path/vision` (tiny CLIPModel + processor) and `path/llm` (tiny Llama + tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def write(tmp: Path) -> None:
        _save_tiny_clip(tmp / "vision")
        tokenizer = _byte_tokenizer()
        d = LM_DIMS
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=d["hidden"],
            intermediate_size=d["intermediate"],
            num_hidden_layers=d["layers"],
            num_attention_heads=d["heads"],
            num_key_value_heads=d["heads"],
            max_position_embeddings=d["max_positions"],
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )
        lm = seeded(lambda: LlamaForCausalLM(config).eval())
        lm.save_pretrained(tmp / "llm")
        tokenizer.save_pretrained(tmp / "llm")
        (tmp / _DONE).write_text(json.dumps({"vision": "vision", "llm": "llm"}) + "\n", encoding="utf-8")

    return build_once(path, write, marker=_DONE)
