"""CLIPScore as the SynthVLM code computes it: cosine of CLIP image and "A photo depicts <caption>" text.

The authors' released scorer (github.com/starriver030515/SynthVLM, ``clipscore/clipscore.py``) uses CLIP
ViT-B/32, the prefix "A photo depicts ", text truncated to CLIP's 77 tokens, bicubic resize + center crop,
fp16 on CUDA and fp32 on CPU, and stores ``2.5 * max(cos, 0) / 2.5``: the clamped cosine, no 2.5 factor.
Images go through the PIL image processor (bicubic resize like the reference), whether or not torchvision
is installed, so scores do not depend on the environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from synthvlm.core.devices import scoring_dtype
from synthvlm.core.errors import loading_model

if TYPE_CHECKING:
    from pathlib import Path

    from synthvlm.config import ScoreConfig


class ClipScorer:
    """Cosine similarity of CLIP image and caption embeddings; the model loads lazily on first use."""

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str = "cpu",
        prefix: str = "A photo depicts ",
        batch_size: int = 32,
        workers: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.workers = workers  # preprocessing threads; per image, so pixels do not depend on it
        self.model = model
        self.revision = revision
        self.device = device
        self.prefix = prefix
        self.batch_size = batch_size
        self._loaded: tuple[Any, Any, Any] | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        """CLIP model, tokenizer and image processor, loaded once per scorer (and so per worker)."""
        if self._loaded is None:
            from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

            dtype = scoring_dtype(self.device)
            # Safetensors when the repo has them; older CLIP repos only ship .bin (loaded weights-only).
            with loading_model(self.model):
                model = CLIPModel.from_pretrained(self.model, revision=self.revision, dtype=dtype)
                tokenizer = CLIPTokenizer.from_pretrained(self.model, revision=self.revision)
                image_processor = CLIPImageProcessorPil.from_pretrained(self.model, revision=self.revision)
            model = model.to(self.device)
            self._loaded = (model.eval(), tokenizer, image_processor)
        return self._loaded

    def cosines(self, images: Sequence[Image.Image], captions: Sequence[str]) -> np.ndarray:
        """Raw cosine(image, prefix + caption) per pair (float64); text past the model's length is cut."""
        return self.embed(images, captions)[0]

    def embed(
        self, images: Sequence[Image.Image], captions: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pair: the cosine, and the L2-normalised image and prefix + caption embeddings (float64)."""
        if len(images) != len(captions):
            raise ValueError(f"Got {len(images)} images but {len(captions)} captions; they must pair up.")
        import torch

        model, tokenizer, image_processor = self._load()
        dim = model.config.projection_dim
        out = np.empty(len(images), dtype=np.float64)
        image_out = np.empty((len(images), dim), dtype=np.float64)
        text_out = np.empty((len(images), dim), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                stop = start + self.batch_size
                text = tokenizer(
                    [self.prefix + c for c in captions[start:stop]],
                    padding=True,
                    truncation=True,
                    return_tensors="pt",
                ).to(self.device)
                pixels = self._pixel_values(image_processor, images[start:stop])
                image_emb = model.get_image_features(
                    pixel_values=pixels.to(self.device, model.dtype)
                ).pooler_output
                text_emb = model.get_text_features(**text).pooler_output
                image_emb = torch.nn.functional.normalize(image_emb.double(), dim=-1)
                text_emb = torch.nn.functional.normalize(text_emb.double(), dim=-1)
                out[start:stop] = (image_emb * text_emb).sum(dim=-1).cpu().numpy()
                image_out[start:stop] = image_emb.cpu().numpy()
                text_out[start:stop] = text_emb.cpu().numpy()
        return out, image_out, text_out

    def _pixel_values(self, image_processor: Any, images: Sequence[Image.Image]) -> Any:
        """The processor's pixel_values for `images`, in contiguous chunks on `workers` threads."""
        import torch
        from transformers.image_transforms import convert_to_rgb

        def one_chunk(chunk: Sequence[Image.Image]) -> Any:
            # uint8 CHW tensors give the processor's exact PIL-path pixels, ~25% faster than PIL input.
            chw = [torch.from_numpy(convert_to_rgb(im, return_numpy=True)).permute(2, 0, 1) for im in chunk]
            return image_processor(images=chw, return_tensors="pt")["pixel_values"]

        from synthvlm.core.parallel import map_in_threads

        size = -(-len(images) // max(1, min(self.workers, len(images))))
        chunks = [images[i : i + size] for i in range(0, len(images), size)]
        return torch.cat(map_in_threads(one_chunk, chunks, self.workers))


def clip_score(cosines: np.ndarray) -> np.ndarray:
    """The paper's CLIPScore: cosine clamped at 0, without CLIPScore's 2.5 weight (it divides it back out)."""
    return np.maximum(np.asarray(cosines, dtype=np.float64), 0.0)


def scorer_for(score: ScoreConfig, *, models_dir: Path) -> ClipScorer:
    """The score stage's CLIP scorer for a config, one per worker process; it preprocesses on the worker's
    threads (torch's thread count: what Ray gives the actor)."""
    import torch

    from synthvlm.core.devices import resolve_device
    from synthvlm.models import registry

    def build() -> ClipScorer:
        return ClipScorer(
            registry.location(score.clip_model, models_dir=models_dir),
            revision=score.clip_revision,
            device=resolve_device(score.device),
            prefix=score.prefix,
            batch_size=score.batch_size,
            workers=torch.get_num_threads(),
        )

    key = (score.model_dump_json(), str(registry.builtin_dir(models_dir)), torch.get_num_threads())
    return registry.cached("score", key, build)
