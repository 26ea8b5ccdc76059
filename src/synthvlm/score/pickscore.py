"""PickScore (Kirstain et al., arXiv 2305.01569): exp(logit_scale) * cos(image, caption) of a CLIPModel
fine-tuned on human preferences, as its authors compute it.

The authors' README (github.com/yuvalkirstain/PickScore) loads the model from `yuvalkirstain/PickScore_v1`
and the processor from `laion/CLIP-ViT-H-14-laion2B-s32B-b79K`, tokenizes with padding and truncation to
77 tokens, L2-normalises both embeddings and takes `model.logit_scale.exp() * (text_embs @ image_embs.T)`;
here the diagonal of that, one value per pair (so not a softmax over the batch). Images go through the PIL
image processor, so scores do not depend on torchvision.
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

    from synthvlm.config import PickScoreConfig

COLUMN = "pickscore"


class PickScorer(PairScorer):
    """PickScore per pair, float64 (about 100 * cosine for PickScore_v1); loads lazily on first use."""

    name = "pickscore"

    @classmethod
    def needs(cls, config: PickScoreConfig, *, field: str) -> list[Need]:
        return [
            Model(f"{field}.model", config.model, "transformers", config.revision, "tiny-clip"),
            Model(f"{field}.processor", config.processor, "processor", alternative="tiny-clip"),
        ]

    config: PickScoreConfig
    _loaded: tuple[Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        """CLIPModel from `config.model`, tokenizer and image processor from `config.processor`."""
        if self._loaded is None:
            from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

            from synthvlm.models import registry

            model_at = registry.location(self.config.model, models_dir=self.models_dir)
            processor_at = registry.location(self.config.processor, models_dir=self.models_dir)
            dtype = scoring_dtype(self.device)
            with loading_model(self.config.model):
                model = CLIPModel.from_pretrained(model_at, revision=self.config.revision, dtype=dtype)
            with loading_model(self.config.processor):
                tokenizer = CLIPTokenizer.from_pretrained(processor_at)
                image_processor = CLIPImageProcessorPil.from_pretrained(processor_at)
            self._loaded = (model.to(self.device).eval(), tokenizer, image_processor)
        return self._loaded

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        if len(images) != len(captions):
            raise ValueError(f"Got {len(images)} images but {len(captions)} captions; they must pair up.")
        import torch

        model, tokenizer, image_processor = self._load()
        scale = model.logit_scale.double().exp()
        out = np.empty(len(images), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                text = tokenizer(
                    list(captions[start:stop]),
                    padding=True,
                    truncation=True,
                    max_length=77,
                    return_tensors="pt",
                ).to(self.device)
                pixels = image_processor(images=list(images[start:stop]), return_tensors="pt")["pixel_values"]
                image_emb = model.get_image_features(
                    pixel_values=pixels.to(self.device, model.dtype)
                ).pooler_output
                text_emb = model.get_text_features(**text).pooler_output
                image_emb = torch.nn.functional.normalize(image_emb.double(), dim=-1)
                text_emb = torch.nn.functional.normalize(text_emb.double(), dim=-1)
                out[start:stop] = (scale * (image_emb * text_emb).sum(dim=-1)).cpu().numpy()
        return {COLUMN: out}
