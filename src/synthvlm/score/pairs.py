"""The opt-in pair scorers: one contract, one file each, one registry.

A scorer turns a batch of (image, caption) pairs into the columns `schema.SCORER_COLUMNS[name]` names. Its
model loads lazily on the first batch, inside the worker, and stays loaded in the worker's model cache.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from PIL import Image

    from synthvlm.config import ScoreConfig
    from synthvlm.core.fsio import RunPath
    from synthvlm.core.needs import Need

SCORERS = {
    "siglip": "synthvlm.score.siglip:SiglipScorer",
    "pickscore": "synthvlm.score.pickscore:PickScorer",
    "vqascore": "synthvlm.score.vqascore:VqaScorer",
    "nsfw": "synthvlm.score.nsfw:NsfwScorer",
    "aesthetic": "synthvlm.score.aesthetic:AestheticScorer",
}
"""Scorer name -> its class (imported on use, so the registry costs nothing to read)."""


class PairScorer(ABC):
    """Scores image-caption pairs into the columns of `schema.SCORER_COLUMNS[name]`."""

    name: ClassVar[str]

    def __init__(
        self, config: Any, *, run_dir: RunPath, models_dir: Path, device: str, batch_size: int, workers: int
    ) -> None:
        self.config = config
        """The scorer's own section of `score.scorers`."""
        self.run_dir = run_dir
        """The run directory (`core.layout` names the caches a scorer may keep there)."""
        self.models_dir = models_dir
        """Where `builtin:` models are built (`models.registry`)."""
        self.device = device
        """A resolved torch device (`cpu`, `cuda:0`)."""
        self.batch_size = batch_size
        """Pairs per forward pass."""
        self.workers = workers
        """Preprocessing threads."""

    @classmethod
    @abstractmethod
    def needs(cls, config: Any, *, field: str) -> list[Need]:
        """What the scorer will load with its config section (`field`: that section's key)."""

    @abstractmethod
    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        """One array per column of this scorer, each as long as `images`, in input order."""


def scorer_class(name: str) -> type[PairScorer]:
    """The class registered as `name`; an unknown name raises ValueError listing the valid ones."""
    if name not in SCORERS:
        raise ValueError(f"unknown pair scorer {name!r}; valid: {', '.join(SCORERS)}")
    module, cls = SCORERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def scorers_for(score: ScoreConfig, *, run_dir: RunPath, models_dir: Path) -> list[PairScorer]:
    """The enabled scorers of a config, each built once per worker process (`models.registry.cached`)."""
    import torch

    from synthvlm.core.devices import resolve_device
    from synthvlm.models import registry

    out = []
    for name in score.scorers.enabled():
        config = getattr(score.scorers, name)

        def build(name: str = name, config: Any = config) -> PairScorer:
            return scorer_class(name)(
                config,
                run_dir=run_dir,
                models_dir=models_dir,
                device=resolve_device(score.device),
                batch_size=score.batch_size,
                workers=torch.get_num_threads(),
            )

        key = (
            str(run_dir),
            config.model_dump_json(),
            score.device,
            score.batch_size,
            str(registry.builtin_dir(models_dir)),
        )
        out.append(registry.cached(f"score.{name}", key, build))
    return out
