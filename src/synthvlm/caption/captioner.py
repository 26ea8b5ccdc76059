"""Image captioning with a transformers image-to-text model (BLIP-2 in the paper), greedy and batched.

Greedy decoding makes a caption a function of the image, the model and the batch layout alone. The model
loads on first use and is cached per process, so a worker captions every shard with one load.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from synthvlm.core.devices import scoring_dtype
from synthvlm.core.errors import loading_model


class Captioner:
    """One image-to-text model (any `AutoModelForImageTextToText`: BLIP, BLIP-2, ...); loads on first use."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        max_new_tokens: int = 30,
        prompt: str | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            dtype = scoring_dtype(self.device)
            with loading_model(self.model):
                model = AutoModelForImageTextToText.from_pretrained(self.model, dtype=dtype)
                processor = AutoProcessor.from_pretrained(self.model)
            self._loaded = (model.to(self.device).eval(), processor)
        return self._loaded

    def captions(self, images: Sequence[Image.Image]) -> list[str]:
        """One caption per RGB image, in order (greedy decoding, whitespace-trimmed)."""
        import torch

        model, processor = self._load()
        out: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = list(images[start : start + self.batch_size])
                kwargs: dict[str, Any] = {"images": batch, "return_tensors": "pt"}
                if self.prompt is not None:
                    kwargs["text"] = [self.prompt] * len(batch)
                inputs = processor(**kwargs).to(self.device)
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
                ids = model.generate(
                    **inputs, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens
                )
                texts = processor.batch_decode(ids, skip_special_tokens=True)
                # Decoder-only captioners (BLIP-2 with OPT) echo the prompt before the caption.
                if self.prompt is not None:
                    texts = [t.removeprefix(self.prompt) for t in texts]
                out.extend(" ".join(t.split()) for t in texts)
        return out


def get_captioner(
    model: str, *, models_dir: Path, device: str, batch_size: int, max_new_tokens: int, prompt: str | None
) -> Captioner:
    """The process-wide captioner for these settings (one model load per worker)."""
    from synthvlm.models import registry

    key = (model, str(registry.builtin_dir(models_dir)), device, batch_size, max_new_tokens, prompt)
    return registry.cached(
        "caption",
        key,
        lambda: Captioner(
            registry.location(model, models_dir=models_dir),
            device=device,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            prompt=prompt,
        ),
    )
