"""Tiny SigLIP (SiglipModel, tokenizer, PIL image processor) built locally, so the SigLIP scorer runs offline.

The tokenizer is a `tokenizers` Unigram model saved as tokenizer.json, so it loads without sentencepiece
(real SigLIP checkpoints ship a SentencePiece model instead). It keeps SigLIP's conventions: lower-cased
text, "▁" word boundaries, "</s>" appended and used as padding, pads of the text model's length.
"""

from __future__ import annotations

import math
from pathlib import Path

from synthvlm.models.builtin.clip import build_once, seeded

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
WORDS = ("a", "the", "cat", "dog", "photo", "of", "red", "on", "road", "sky")
"""Whole-word pieces, so that tokenization merges something; any other word falls back to characters."""
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
SIGLIP_DIMS = {
    "hidden": 32,
    "intermediate": 37,
    "layers": 2,
    "heads": 4,
    "image": 30,
    "patch": 2,
    "text_length": 16,
}
LOGIT_SCALE = math.log(10.0)
LOGIT_BIAS = -1.0
"""Set instead of SigLIP's zero init, so the scorer's use of both is visible in the scores."""
_MARKER = "model.safetensors"


def _tokenizer(length: int):
    """A Unigram tokenizer in SigLIP's layout: ids 0-2 are <pad>, </s>, <unk>; "</s>" ends every text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from tokenizers import decoders as dec
    from transformers import PreTrainedTokenizerFast

    # Every piece scores the same, so the segmentation with the fewest pieces wins: whole words first.
    pieces = [PAD, EOS, UNK, "▁", *CHARS, *(f"▁{w}" for w in WORDS)]
    tok = Tokenizer(models.Unigram([(p, -1.0) for p in pieces], unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = dec.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token=UNK, model_max_length=length
    )


def build_tiny_siglip(path: str | Path) -> Path:
    """Build (once) a tiny random SiglipModel with tokenizer.json and preprocessor_config.json; it loads
    with SiglipModel / AutoTokenizer / SiglipImageProcessorPil.from_pretrained like a hub checkpoint."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    d = SIGLIP_DIMS

    def write(tmp: Path) -> None:
        tokenizer = _tokenizer(d["text_length"])
        tokenizer.save_pretrained(tmp)
        common = {
            "hidden_size": d["hidden"],
            "intermediate_size": d["intermediate"],
            "num_hidden_layers": d["layers"],
            "num_attention_heads": d["heads"],
        }
        config = SiglipConfig(
            text_config={
                **common,
                "vocab_size": len(tokenizer),
                "max_position_embeddings": d["text_length"],
                "projection_size": d["hidden"],
                "pad_token_id": tokenizer.pad_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "bos_token_id": None,
            },
            vision_config={**common, "image_size": d["image"], "patch_size": d["patch"]},
        )

        def model() -> SiglipModel:
            m = SiglipModel(config).eval()
            m.logit_scale.data.fill_(LOGIT_SCALE)
            m.logit_bias.data.fill_(LOGIT_BIAS)
            return m

        seeded(model).save_pretrained(tmp)
        SiglipImageProcessorPil(size={"height": d["image"], "width": d["image"]}).save_pretrained(tmp)

    return build_once(path, write, marker=_MARKER)
