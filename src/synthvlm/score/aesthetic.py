"""The LAION improved aesthetic predictor (github.com/christophschuhmann/improved-aesthetic-predictor): an MLP
on the L2-normalised CLIP image embedding, as its authors' `simple_inference.py` computes it.

The authors embed the image with OpenAI CLIP ViT-L/14 (`encode_image`: the projected embedding, here
`CLIPModel.get_image_features(...).pooler_output`), divide it by its L2 norm and feed it to the MLP of
`models.builtin.aesthetic.mlp` (five Linear layers, no activations). The caption never enters. Images go
through the PIL image processor, so scores do not depend on torchvision; the norm and the MLP run in float64
(the authors: float32), so the score depends on the batch only through the CLIP tower's float32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthvlm.core.devices import scoring_dtype
from synthvlm.core.errors import UserError, loading_model
from synthvlm.core.needs import Model, Need
from synthvlm.score.pairs import PairScorer

if TYPE_CHECKING:
    from PIL import Image

    from synthvlm.config import AestheticConfig

COLUMN = "aesthetic"


def predictor(path: Path) -> Any:  # -> torch.nn.ModuleDict
    """The MLP a weights file holds, its input width read from `layers.0.weight` (float32, on the CPU)."""
    import torch

    from synthvlm.models.builtin.aesthetic import mlp
    from synthvlm.models.registry import read_state_dict

    state = read_state_dict(path)
    first = state.get("layers.0.weight")
    if not isinstance(first, torch.Tensor) or first.ndim != 2:
        raise ValueError(f"{path} has no 2-d layers.0.weight: not the aesthetic predictor's MLP")
    head = mlp(first.shape[1])
    try:
        head.load_state_dict(state)
    except RuntimeError as exc:  # missing, unexpected or misshapen tensors, each named by torch
        reason = " ".join(str(exc).split())
    else:
        return head
    raise ValueError(f"{path}: {reason}")


class AestheticScorer(PairScorer):
    """Aesthetic score per image, float64 (about 1 to 10 with the LAION weights); captions are unused."""

    name = "aesthetic"

    @classmethod
    def needs(cls, config: AestheticConfig, *, field: str) -> list[Need]:
        from synthvlm.models.builtin.aesthetic import WEIGHTS_FILE

        return [
            Model(
                f"{field}.clip_model", config.clip_model, "transformers", config.clip_revision, "tiny-clip"
            ),
            Model(
                f"{field}.weights",
                config.weights,
                "file",
                alternative="tiny-aesthetic",
                in_folder=WEIGHTS_FILE,
            ),
        ]

    config: AestheticConfig
    _loaded: tuple[Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        """CLIPModel and its PIL image processor from `clip_model`, and the MLP (float64) from `weights`."""
        if self._loaded is None:
            import torch
            from transformers import CLIPImageProcessorPil, CLIPModel

            from synthvlm.models import registry
            from synthvlm.models.builtin.aesthetic import WEIGHTS_FILE

            location = registry.location(self.config.clip_model, models_dir=self.models_dir)
            revision = self.config.clip_revision
            with loading_model(self.config.clip_model):
                model = CLIPModel.from_pretrained(
                    location, revision=revision, dtype=scoring_dtype(self.device)
                )
                image_processor = CLIPImageProcessorPil.from_pretrained(location, revision=revision)
            with loading_model(self.config.weights):
                weights = registry.weights_file(
                    self.config.weights, models_dir=self.models_dir, in_folder=WEIGHTS_FILE
                )
                head = predictor(weights)
            width, projection = head["layers"][0].in_features, model.config.projection_dim
            if width != projection:
                raise UserError(
                    f"score.scorers.aesthetic: the weights {self.config.weights!r} read {width}-d image "
                    f"embeddings but {self.config.clip_model!r} gives {projection}-d ones; pair them with "
                    "the CLIP model they were trained on (the LAION weights: openai/clip-vit-large-patch14)"
                )
            self._loaded = (
                model.to(self.device).eval(),
                image_processor,
                head.to(self.device, torch.float64)["layers"],
            )
        return self._loaded

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        if len(images) != len(captions):
            raise ValueError(f"Got {len(images)} images but {len(captions)} captions; they must pair up.")
        import torch

        model, image_processor, head = self._load()
        out = np.empty(len(images), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                pixels = image_processor(images=list(images[start:stop]), return_tensors="pt")["pixel_values"]
                emb = model.get_image_features(pixel_values=pixels.to(self.device, model.dtype)).pooler_output
                emb = torch.nn.functional.normalize(emb.double(), dim=-1)
                out[start:stop] = head(emb)[:, 0].cpu().numpy()
        return {COLUMN: out}
