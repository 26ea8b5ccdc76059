"""Device selection shared by every model-loading stage."""

from __future__ import annotations

from synthvlm.core.errors import UserError


def resolve_device(device: str) -> str:
    """`auto` is CUDA when available, else CPU; any other name is used as given, once torch can use it here.

    A device this machine cannot use (a CUDA device on a CPU-only torch or without a GPU, an index past the
    visible GPUs, a name torch does not know) is a one-line UserError before any model loads.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device {device!r}: {' '.join(str(exc).split())}") from None
    if parsed.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible == 0:
            why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UserError(f"device {device!r} requested, but {why} here; use device: auto or cpu")
        if parsed.index is not None and parsed.index >= visible:
            raise UserError(f"device {device!r} requested, but only {visible} CUDA GPU(s) are visible here")
    return device


def scoring_dtype(device: str):  # -> torch.dtype
    """The dtype scoring and captioning models load in: float16 on CUDA (as the reference scorers run),
    float32 on CPU (where float16 kernels are slow or missing)."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32
