"""The LAION improved aesthetic predictor's MLP, and a tiny random-weight one built locally for tests and the
offline demo.

The predictor (github.com/christophschuhmann/improved-aesthetic-predictor) is five Linear layers without
activations, with dropout after the first three, under a `layers` Sequential: its state dicts (the `.pth`
files and their safetensors copies) hold `layers.{0,2,4,6,7}.{weight,bias}`. `mlp` builds exactly that
module, so a state dict of any other layout fails `load_state_dict` by name. The tiny one has the same
layers, its input as wide as the tiny CLIP's projection (`CLIP_DIMS["projection"]`), and seeded weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthvlm.models.builtin.clip import CLIP_DIMS, build_once, seeded

WIDTHS = (1024, 128, 64, 16, 1)
"""Output widths of the five Linear layers (the input width is the CLIP embedding's: 768 for ViT-L/14)."""
DROPOUT = (0.2, 0.2, 0.1)
"""Dropout after each of the first three Linear layers (a no-op at inference; kept for the layer indices)."""
WEIGHTS_FILE = "model.safetensors"
"""The file a weights folder holds the MLP in: a `builtin:` model's, or any folder given as
`score.scorers.aesthetic.weights`."""


def mlp(width: int) -> Any:  # -> torch.nn.ModuleDict
    """The predictor's module for `width`-d embeddings, as its state dicts name it: `mlp(w)["layers"](x)`."""
    import torch

    layers: list[torch.nn.Module] = []
    for i, out in enumerate(WIDTHS):
        layers.append(torch.nn.Linear(width, out))
        if i < len(DROPOUT):
            layers.append(torch.nn.Dropout(DROPOUT[i]))
        width = out
    return torch.nn.ModuleDict({"layers": torch.nn.Sequential(*layers)}).eval()


def build_tiny_aesthetic(path: str | Path) -> Path:
    """Build (once) a folder holding a seeded random MLP for the tiny CLIP's embeddings as `WEIGHTS_FILE`."""

    def write(tmp: Path) -> None:
        from safetensors.torch import save_file

        # safetensors (sorted keys, no timestamps) rather than torch.save, whose zip carries a random id:
        # every build is byte-identical.
        save_file(seeded(lambda: mlp(CLIP_DIMS["projection"])).state_dict(), str(tmp / WEIGHTS_FILE))

    return build_once(path, write, marker=WEIGHTS_FILE)
