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


def _byte_tokenizer(merges: tuple[tuple[str, str], ...] = ()):  # -> transformers.PreTrainedTokenizerFast
    """Byte-level BPE: every UTF-8 byte is one token, so any caption round-trips exactly; `merges` add
    whole-word tokens after the byte tokens (the answer tokens of the llava-hf build)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    merged = ["".join(pair) for pair in merges]
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *byte_chars, *merged])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(merges), unk_token="<unk>"))
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


def _lm_config(tokenizer, **extra):  # (PreTrainedTokenizerFast, ...) -> transformers.LlamaConfig
    """The tiny Llama LM's config (LM_DIMS), its special tokens the tokenizer's."""
    from transformers import LlamaConfig

    d = LM_DIMS
    return LlamaConfig(
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
        **extra,
    )


def _save_tiny_clip(path: Path) -> None:
    """A whole CLIPModel checkpoint plus image processor, laid out like openai/clip-vit-large-patch14-336."""
    save_clip(path, VISION_DIMS, vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1)


def build_tiny_llava(path: str | Path) -> Path:
    """Build (once) `path/vision` (tiny CLIPModel + processor) and `path/llm` (tiny Llama + tokenizer)."""
    from transformers import LlamaForCausalLM

    def write(tmp: Path) -> None:
        _save_tiny_clip(tmp / "vision")
        tokenizer = _byte_tokenizer()
        config = _lm_config(tokenizer)
        lm = seeded(lambda: LlamaForCausalLM(config).eval())
        lm.save_pretrained(tmp / "llm")
        tokenizer.save_pretrained(tmp / "llm")
        (tmp / _DONE).write_text(json.dumps({"vision": "vision", "llm": "llm"}) + "\n", encoding="utf-8")

    return build_once(path, write, marker=_DONE)


# llava-hf/llava-1.5's chat template, text parts only: "USER: <image>\n{text} ASSISTANT:".
LLAVA_HF_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# Whole-word tokens for the answers VQAScore asks about, so "Yes" is one token as in real vocabularies.
ANSWERS = ("Yes", "No")
_ANSWER_MERGES = (("Y", "e"), ("Ye", "s"), ("N", "o"))
_HF_DONE = "tiny_llava_hf.json"


def _answering(model, tokenizer):  # LlavaForConditionalGeneration -> the same, eval mode
    """`model` with every output row but the answers' scaled by 0.1 (see `build_tiny_llava_hf`)."""
    import torch

    answers = tokenizer.convert_tokens_to_ids(list(ANSWERS))
    with torch.no_grad():
        weight = model.lm_head.weight
        kept = weight[answers].clone()
        weight.mul_(0.1)
        weight[answers] = kept
    return model.eval()


def build_tiny_llava_hf(path: str | Path) -> Path:
    """Build (once) a tiny llava-hf-style folder: LlavaForConditionalGeneration + LlavaProcessor, loadable by
    `AutoProcessor` and `AutoModelForImageTextToText` like llava-hf/llava-1.5-7b-hf.

    The weights are drawn wider than the default init so that the image and the text move the last hidden
    state, and the output rows of all tokens but "Yes" and "No" are shrunk tenfold: the model then mostly
    answers yes or no, with a probability of "Yes" that differs visibly between image-caption pairs.
    """
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    def write(tmp: Path) -> None:
        tokenizer = _byte_tokenizer(_ANSWER_MERGES)
        v = VISION_DIMS
        vision = CLIPVisionConfig(
            hidden_size=v["hidden"],
            intermediate_size=v["intermediate"],
            num_hidden_layers=v["layers"],
            num_attention_heads=v["heads"],
            image_size=v["image"],
            patch_size=v["patch"],
        )
        text = _lm_config(tokenizer, initializer_range=0.5)
        config = LlavaConfig(
            vision_config=vision.to_dict(),
            text_config=text.to_dict(),
            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
            projector_hidden_act="gelu",
            vision_feature_layer=-2,
            vision_feature_select_strategy="default",
            image_seq_length=(v["image"] // v["patch"]) ** 2,
            tie_word_embeddings=False,
        )
        seeded(lambda: _answering(LlavaForConditionalGeneration(config), tokenizer)).save_pretrained(tmp)
        size = v["image"]
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        )
        LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=v["patch"],
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # CLIP's CLS token
            chat_template=LLAVA_HF_CHAT_TEMPLATE,
            image_token=IMAGE_TOKEN,
        ).save_pretrained(tmp)
        (tmp / _HF_DONE).write_text(json.dumps({"format": "llava-hf"}) + "\n", encoding="utf-8")

    return build_once(path, write, marker=_HF_DONE)
