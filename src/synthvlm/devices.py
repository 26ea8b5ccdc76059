"""Device selection shared by every model-loading stage."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """`auto` is CUDA when available, else CPU; any other name is used as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
