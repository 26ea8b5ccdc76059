"""Original-pair alignment: keep a caption only if it matches the real image it was written for.

The paper keeps pairs with CLIP (ViT-B/32) cosine >= 0.28 and BLIP image-text matching (the ITM head of
`Salesforce/blip-itm-base-coco`, probability of "match") >= 0.8. Captions without an `image_ref` pass
through untouched (the pool may mix sources); a reference that does not resolve to a file is dropped as
`missing_image`, one that Pillow cannot decode as `unreadable_image`, each with the path as detail. Relative
references are resolved against `image_root`. CLIP runs first; BLIP scores only the captions CLIP kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from synthvlm.config import AlignmentConfig, CurateConfig
from synthvlm.core import fsio, layout
from synthvlm.core.devices import resolve_device
from synthvlm.core.errors import loading_model
from synthvlm.core.needs import RECIPE_FIX, Exists, Model, Need
from synthvlm.models import registry
from synthvlm.score.clip import ClipScorer
from synthvlm.steps.base import OPERATIONAL, CurateStep, Decision, Drop


class ItmScorer:
    """BLIP image-text matching probability per pair; the model loads on first use."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 16) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self._loaded: tuple[Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        if self._loaded is None:
            from transformers import AutoTokenizer, BlipForImageTextRetrieval, BlipImageProcessorPil

            with loading_model(self.model):
                model = BlipForImageTextRetrieval.from_pretrained(self.model)
                tokenizer = AutoTokenizer.from_pretrained(self.model)
                image_processor = BlipImageProcessorPil.from_pretrained(self.model)
            self._loaded = (model.to(self.device).eval(), tokenizer, image_processor)
        return self._loaded

    def scores(self, images: Sequence[Image.Image], captions: Sequence[str]) -> np.ndarray:
        """softmax(ITM logits)[:, 1] (float64) for each image/caption pair."""
        import torch

        model, tokenizer, processor = self._load()
        out = np.empty(len(images), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                text = tokenizer(
                    list(captions[start:stop]), padding=True, truncation=True, return_tensors="pt"
                )
                pixels = processor(images=list(images[start:stop]), return_tensors="pt")["pixel_values"]
                logits = model(
                    input_ids=text["input_ids"].to(self.device),
                    attention_mask=text["attention_mask"].to(self.device),
                    pixel_values=pixels.to(self.device, model.dtype),
                    use_itm_head=True,
                ).itm_score
                out[start:stop] = torch.softmax(logits.double(), dim=-1)[:, 1].cpu().numpy()
        return out


def load_image(ref: str, *, root: str | None) -> Image.Image | tuple[str, str]:
    """The RGB image behind a reference, or (reason, path) when it is missing or cannot be decoded."""
    path = Path(ref) if root is None else Path(root) / ref
    if not path.is_file():
        return ("missing_image", str(path))
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, Image.DecompressionBombError, ValueError):
        return ("unreadable_image", str(path))


@dataclass(frozen=True, kw_only=True)
class AlignmentStep(CurateStep):
    """Drops captions whose original image is missing, unreadable, or matches them too weakly."""

    name = "alignment"
    folder = "aligned"

    config: AlignmentConfig
    models_dir: Path
    """Where `builtin:` models are built (the run's)."""

    @classmethod
    def needs(cls, config: CurateConfig) -> list[Need]:
        cfg = config.alignment
        if cfg is None:
            return []
        out: list[Need] = []
        if cfg.image_root is not None:
            out.append(
                Exists(f"curate.alignment.image_root {cfg.image_root}", cfg.image_root, "folder", RECIPE_FIX)
            )
        if cfg.clip_model:
            out.append(
                Model("curate.alignment.clip_model", cfg.clip_model, "transformers", alternative="tiny-clip")
            )
        if cfg.itm_model:
            out.append(
                Model(
                    "curate.alignment.itm_model", cfg.itm_model, "transformers", alternative="tiny-blip-itm"
                )
            )
        return out

    @classmethod
    def from_config(cls, config: CurateConfig, *, run_dir: fsio.RunPath) -> AlignmentStep | None:
        if config.alignment is None:
            return None
        return cls(config=config.alignment, models_dir=layout.models_dir(run_dir))

    def settings(self) -> dict[str, Any]:
        return {"alignment": self.config.model_dump(exclude=OPERATIONAL)}

    def scorers(self) -> tuple[ClipScorer | None, ItmScorer | None]:
        """This worker's CLIP and ITM scorers (None where the config skips one), loaded once."""
        config, models_dir = self.config, self.models_dir

        def build() -> tuple[ClipScorer | None, ItmScorer | None]:
            device = resolve_device(config.device)
            clip = (
                None
                if config.clip_model is None
                else ClipScorer(
                    registry.location(config.clip_model, models_dir=models_dir),
                    device=device,
                    prefix="",
                    batch_size=config.batch_size,
                )
            )
            itm = (
                None
                if config.itm_model is None
                else ItmScorer(
                    registry.location(config.itm_model, models_dir=models_dir),
                    device=device,
                    batch_size=config.batch_size,
                )
            )
            return clip, itm

        return registry.cached("alignment", (config, str(registry.builtin_dir(models_dir))), build)

    def decide(self, table: pa.Table, plan: pa.Table | None = None) -> Decision:
        config = self.config
        clip, itm = self.scorers()
        captions = table.column("caption").to_pylist()
        refs = table.column("image_ref").to_pylist()
        keep = [True] * len(captions)
        drops: list[Drop] = []
        rows: list[int] = []
        images: list[Image.Image] = []
        for i, ref in enumerate(refs):
            if ref is None:
                continue
            loaded = load_image(ref, root=config.image_root)
            if isinstance(loaded, tuple):
                keep[i] = False
                drops.append(Drop(i, loaded[0], detail=loaded[1]))
            else:
                rows.append(i)
                images.append(loaded)
        for name, scorer, minimum in (
            ("clip_alignment", clip, config.min_clip),
            ("itm_alignment", itm, config.min_itm),
        ):
            if scorer is None or not rows:
                continue
            values = (
                scorer.cosines(images, [captions[r] for r in rows])
                if name == "clip_alignment"
                else scorer.scores(images, [captions[r] for r in rows])
            )
            survivors = [(r, img) for r, img, v in zip(rows, images, values, strict=True) if v >= minimum]
            for r, v in zip(rows, values, strict=True):
                if v < minimum:
                    keep[r] = False
                    drops.append(Drop(r, name, value=float(v)))
            rows, images = [r for r, _ in survivors], [img for _, img in survivors]
        drops.sort(key=lambda d: d.row)
        return Decision(keep, drops)
