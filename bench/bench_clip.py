"""CLIP cosines: synthvlm's ClipScorer against torchmetrics' clip_score on the same tiny local CLIP."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common import median_seconds, row, table

PEER = "torchmetrics.functional.multimodal.clip_score"
PREFIX = "A photo depicts "
WORDS = ["cat", "dog", "red", "bus", "the", "photo", "road", "sky", "on", "a", "green", "tree"]


def _inputs(n: int) -> tuple[list[Image.Image], list[str]]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(n)]
    captions = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 10)))) for _ in range(n)]
    return images, captions


def _torchmetrics_model(path: Path) -> tuple[Any, Any]:
    """The same local CLIP as (model, processor) for torchmetrics, behind an adapter for transformers 5."""
    import torch
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil.from_pretrained(path, local_files_only=True),
        tokenizer=CLIPTokenizer.from_pretrained(path, local_files_only=True),
    )

    class Adapter(torch.nn.Module):
        """torchmetrics 1.9 expects tensors from get_*_features; transformers 5 returns output objects."""

        def __init__(self) -> None:
            super().__init__()
            self.clip = model
            self.config = model.config

        def get_image_features(self, pixel_values: Any) -> Any:
            return self.clip.get_image_features(pixel_values=pixel_values).pooler_output

        def get_text_features(self, input_ids: Any, attention_mask: Any) -> Any:
            out = self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            return out.pooler_output

    return Adapter(), processor


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Images/s of both scorers over the same pairs, in batches of 32, plus their largest disagreement."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args(argv)
    import torch
    import transformers
    from torchmetrics.functional.multimodal import clip_score as tm_clip_score

    from synthvlm.models.builtin.clip import build_tiny_clip
    from synthvlm.score.clip import ClipScorer, clip_score

    transformers.utils.logging.disable_progress_bar()
    n, batch, repeat = 64, 32, (3 if args.quick else 7)
    images, captions = _inputs(n)
    texts = [PREFIX + c for c in captions]
    # uint8 CHW tensors: torchmetrics rescales float input a second time
    tensors = [torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images]
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_clip(Path(tmp) / "clip")
        scorer = ClipScorer(str(path), batch_size=batch, workers=torch.get_num_threads())  # as the stage
        adapter, processor = _torchmetrics_model(path)

        def load() -> tuple[Any, Any]:
            return adapter, processor

        def peer() -> None:
            # torchmetrics takes tensors: both sides start from the same PIL images.
            chw = [torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images]
            with torch.no_grad():
                for s in range(0, n, batch):
                    tm_clip_score(chw[s : s + batch], texts[s : s + batch], load)

        ours = clip_score(scorer.cosines(images, captions))
        with torch.no_grad():  # per image: the functional API returns a batch mean
            pairs = zip(tensors, texts, strict=True)
            theirs = np.array([tm_clip_score(t, x, load).item() / 100 for t, x in pairs])
        diff = float(np.abs(ours - theirs).max())
        t_ours = median_seconds(lambda: scorer.cosines(images, captions), repeat=repeat)
        t_peer = median_seconds(peer, repeat=repeat)
    return [
        row(
            "CLIP cosines, tiny local CLIP, 224² images",
            ours=n / t_ours,
            peer=n / t_peer,
            peer_name=PEER + " (adapter, callable loader)",
            unit="images/s",
            higher_is_better=True,
            notes=f"{n} pairs, batches of {batch}, model load excluded, ours preprocessing on "
            f"{scorer.workers} threads; max abs(max(cos,0) - tm/100) {diff:.1e}",
        ),
    ]


if __name__ == "__main__":
    print(table(main(sys.argv[1:])))
