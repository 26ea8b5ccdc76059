"""SigLIP's own pair probability: sigmoid(exp(logit_scale) * cos(image, caption) + logit_bias).

SigLIP is trained with a sigmoid loss on each pair alone, so this is a calibrated per-pair match probability
(unlike CLIP's softmax over a batch). As in training (big_vision, and the model card's "padding=max_length"),
text is padded to the text model's length and fed without an attention mask: pads are attended, and the
text embedding is the last position's. No prompt template is added. Images go through the PIL image
processor, so scores do not depend on torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from synthvlm.core.devices import scoring_dtype
from synthvlm.core.errors import UserError, loading_model
from synthvlm.core.needs import Model, Need
from synthvlm.score.pairs import PairScorer

if TYPE_CHECKING:
    from PIL import Image

    from synthvlm.config import SiglipScorerConfig

COLUMN = "siglip"


class SiglipScorer(PairScorer):
    """SigLIP match probability per pair, float64 in (0, 1); the model loads lazily on first use."""

    name = "siglip"

    @classmethod
    def needs(cls, config: SiglipScorerConfig, *, field: str) -> list[Need]:
        return [Model(f"{field}.model", config.model, "transformers", config.revision, "tiny-siglip")]

    config: SiglipScorerConfig
    _loaded: tuple[Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        """SiglipModel, tokenizer and image processor, loaded once per scorer (and so per worker)."""
        if self._loaded is None:
            from transformers import AutoTokenizer, SiglipImageProcessorPil, SiglipModel

            from synthvlm.models import registry

            location = registry.location(self.config.model, models_dir=self.models_dir)
            revision = self.config.revision
            dtype = scoring_dtype(self.device)
            with loading_model(self.config.model):
                model = SiglipModel.from_pretrained(location, revision=revision, dtype=dtype)
                try:
                    tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
                except ImportError as exc:  # hub SigLIP checkpoints ship a SentencePiece model only
                    reason = " ".join(str(exc).split(" but ")[0].split())
                    raise UserError(
                        f"score.scorers.siglip: the tokenizer of {self.config.model!r} needs a package "
                        f"that is not installed ({reason}); pip install sentencepiece protobuf"
                    ) from None
                image_processor = SiglipImageProcessorPil.from_pretrained(location, revision=revision)
            self._loaded = (model.to(self.device).eval(), tokenizer, image_processor)
        return self._loaded

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        if len(images) != len(captions):
            raise ValueError(f"Got {len(images)} images but {len(captions)} captions; they must pair up.")
        import torch

        model, tokenizer, image_processor = self._load()
        length = model.config.text_config.max_position_embeddings
        scale = model.logit_scale.double().exp()
        bias = model.logit_bias.double()
        out = np.empty(len(images), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                input_ids = tokenizer(
                    list(captions[start:stop]),
                    padding="max_length",
                    max_length=length,
                    truncation=True,
                    return_tensors="pt",
                )["input_ids"]
                pixels = image_processor(images=list(images[start:stop]), return_tensors="pt")["pixel_values"]
                image_emb = model.get_image_features(
                    pixel_values=pixels.to(self.device, model.dtype)
                ).pooler_output
                text_emb = model.get_text_features(input_ids=input_ids.to(self.device)).pooler_output
                image_emb = torch.nn.functional.normalize(image_emb.double(), dim=-1)
                text_emb = torch.nn.functional.normalize(text_emb.double(), dim=-1)
                cos = (image_emb * text_emb).sum(dim=-1)
                out[start:stop] = torch.sigmoid(scale * cos + bias).cpu().numpy()
        return {COLUMN: out}
