"""The Stable Diffusion safety checker (diffusers' StableDiffusionSafetyChecker): a flag and a margin.

The checker embeds the image with its CLIP vision tower and compares it (cosine) with 17 concept and 3
"special care" embeddings, each with its own threshold. As diffusers' `forward` computes it, in float32
numpy: special score = round(cos - threshold, 3); when any is > 0 an adjustment of 0.01 is added to every
concept score = round(cos - threshold + adjustment, 3); the image is flagged when any concept score is > 0.
`nsfw_margin` is the largest concept score, so `nsfw == (nsfw_margin > 0)` exactly, and the flag is the
checker's own. Images go through its CLIP image processor's PIL path, as the SD pipelines feed it PIL images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from synthvlm.core.devices import scoring_dtype
from synthvlm.core.errors import loading_model
from synthvlm.core.needs import Model, Need
from synthvlm.score.pairs import PairScorer

if TYPE_CHECKING:
    from PIL import Image

    from synthvlm.config import NsfwConfig

ADJUSTMENT = 0.01
"""What diffusers adds to every concept score of an image that passes a special-care threshold."""


class NsfwScorer(PairScorer):
    """Safety-checker flag (bool) and largest concept margin (float64) per image; captions are unused."""

    name = "nsfw"

    @classmethod
    def needs(cls, config: NsfwConfig, *, field: str) -> list[Need]:
        return [Model(f"{field}.model", config.model, "transformers", config.revision, "tiny-safety-checker")]

    config: NsfwConfig
    _loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        """The checker and its image processor, loaded once per scorer (and so per worker)."""
        if self._loaded is None:
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
            from transformers import CLIPImageProcessorPil

            from synthvlm.models import registry

            location = registry.location(self.config.model, models_dir=self.models_dir)
            revision = self.config.revision
            dtype = scoring_dtype(self.device)
            with loading_model(self.config.model):
                checker = StableDiffusionSafetyChecker.from_pretrained(
                    location, revision=revision, dtype=dtype
                )
                image_processor = CLIPImageProcessorPil.from_pretrained(location, revision=revision)
            self._loaded = (checker.to(self.device).eval(), image_processor)
        return self._loaded

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        if len(images) != len(captions):
            raise ValueError(f"Got {len(images)} images but {len(captions)} captions; they must pair up.")
        import torch

        checker, image_processor = self._load()
        margin = np.empty(len(images), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                pixels = image_processor(images=list(images[start:stop]), return_tensors="pt")["pixel_values"]
                margin[start:stop] = _concept_margins(checker, pixels.to(self.device, checker.dtype))
        return {"nsfw": margin > 0, "nsfw_margin": margin}


def _concept_margins(checker: Any, clip_input: Any) -> np.ndarray:
    """The largest concept score per image, with the operations and dtypes of the checker's `forward`."""
    from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

    image_embeds = checker.visual_projection(checker.vision_model(clip_input).pooler_output)
    special_cos = cosine_distance(image_embeds, checker.special_care_embeds).cpu().float().numpy()
    concept_cos = cosine_distance(image_embeds, checker.concept_embeds).cpu().float().numpy()
    special_thresholds = checker.special_care_embeds_weights.cpu().float().numpy()
    concept_thresholds = checker.concept_embeds_weights.cpu().float().numpy()
    # forward adds 0.01 to the special scores after the first one above 0 as well, but whether any is
    # above 0 is decided by the first, which had none added: so the plain comparison decides it.
    special_care = (np.round(special_cos - special_thresholds, 3) > 0).any(axis=1)
    adjustment = np.where(special_care, np.float32(ADJUSTMENT), np.float32(0.0))[:, None]
    concept_scores = np.round(concept_cos - concept_thresholds + adjustment, 3)
    # float32 -> float64 keeps 0.123 as 0.12300000339...; rounding again stores 0.123, sign unchanged.
    return np.round(concept_scores.max(axis=1).astype(np.float64), 3)
