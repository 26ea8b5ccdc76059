"""Opt-in pair scorers against a bare `model(**inputs)` loop over the same loaded model and processor.

The bare loop is what a user writes by hand: processor, one forward pass per batch, no bookkeeping. The
ratio shows what the scorer's own work (batching, dtype handling, score extraction) costs on top.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common import median_seconds, row, table

WORDS = ["cat", "dog", "red", "bus", "the", "photo", "road", "sky", "on", "a", "green", "tree"]


def _inputs(n: int) -> tuple[list[Image.Image], list[str]]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(n)]
    captions = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 10)))) for _ in range(n)]
    return images, captions


def _bare(name: str, scorer: Any, images: list[Image.Image], captions: list[str], batch: int) -> None:
    """One forward pass per batch on the scorer's own loaded parts, preprocessing included."""
    import torch

    with torch.inference_mode():
        for s in range(0, len(images), batch):
            ims, caps = images[s : s + batch], captions[s : s + batch]
            if name == "siglip":
                model, tokenizer, image_processor = scorer._load()
                text = tokenizer(caps, padding="max_length", truncation=True, return_tensors="pt")
                pixels = image_processor(images=ims, return_tensors="pt")["pixel_values"]
                model(input_ids=text["input_ids"], pixel_values=pixels)
            elif name == "pickscore":
                model, tokenizer, image_processor = scorer._load()
                text = tokenizer(caps, padding=True, truncation=True, return_tensors="pt")
                pixels = image_processor(images=ims, return_tensors="pt")["pixel_values"]
                model(**text, pixel_values=pixels)
            elif name == "nsfw":
                checker, image_processor = scorer._load()
                pixels = image_processor(images=ims, return_tensors="pt")["pixel_values"]
                checker(clip_input=pixels, images=np.zeros((len(ims), 1, 1, 3)))
            elif name == "aesthetic":
                model, image_processor, head = scorer._load()
                pixels = image_processor(images=ims, return_tensors="pt")["pixel_values"]
                emb = model.get_image_features(pixel_values=pixels).pooler_output.double()
                head(emb / emb.norm(dim=-1, keepdim=True))
            else:  # vqascore, transformers backend
                model, processor, _ = scorer._backend._load()
                question = scorer.config.template
                prompts = [
                    processor.apply_chat_template(
                        [
                            {
                                "role": "user",
                                "content": [
                                    {"type": "image"},
                                    {"type": "text", "text": question.format(caption=c)},
                                ],
                            }
                        ],
                        add_generation_prompt=True,
                    )
                    for c in caps
                ]
                inputs = processor(
                    images=ims, text=prompts, padding=True, padding_side="left", return_tensors="pt"
                )
                model(**inputs, logits_to_keep=1).logits[:, -1].softmax(-1)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Pairs/s of each scorer and of the bare loop over the same 256 pairs, batches of 16."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    import torch
    import transformers

    from synthvlm.config import (
        AestheticConfig,
        NsfwConfig,
        PickScoreConfig,
        SiglipScorerConfig,
        VqaScoreConfig,
    )
    from synthvlm.score.pairs import scorer_class

    transformers.utils.logging.disable_progress_bar()
    n, batch, repeat = (64 if args.quick else 256), 16, (3 if args.quick else 5)
    images, captions = _inputs(n)
    configs = {
        "siglip": SiglipScorerConfig(model="builtin:tiny-siglip"),
        "pickscore": PickScoreConfig(model="builtin:tiny-clip", processor="builtin:tiny-clip"),
        "nsfw": NsfwConfig(model="builtin:tiny-safety-checker"),
        "vqascore": VqaScoreConfig(model="builtin:tiny-llava-hf", batch_size=batch),
        "aesthetic": AestheticConfig(clip_model="builtin:tiny-clip", weights="builtin:tiny-aesthetic"),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in configs.items():
            scorer = scorer_class(name)(
                config,
                run_dir=Path(tmp),
                models_dir=Path(tmp) / "models",
                device="cpu",
                batch_size=batch,
                workers=torch.get_num_threads(),
            )
            scorer.score(images[:batch], captions[:batch])  # loads the model
            t_ours = median_seconds(lambda s=scorer: s.score(images, captions), repeat=repeat)
            t_peer = median_seconds(
                lambda s=scorer, m=name: _bare(m, s, images, captions, batch), repeat=repeat
            )
            rows.append(
                row(
                    f"{name} scorer, tiny builtin model, 224² images",
                    ours=n / t_ours,
                    peer=n / t_peer,
                    peer_name="bare model(**inputs) loop, same model and processor",
                    unit="pairs/s",
                    higher_is_better=True,
                    notes=f"{n} pairs, batches of {batch}, model load excluded",
                )
            )
    return rows


if __name__ == "__main__":
    print(table(main(sys.argv[1:])))
