"""Model names to what `from_pretrained` loads, and the one per-process cache of loaded models.

A model string is one of: `builtin:NAME` (a tiny random-weight model synthvlm builds locally from a
config: tests and the offline demo), a local folder, or a hub id. Every stage, step and report resolves
models here, so the rule and its error text exist once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from synthvlm.core.errors import UserError

T = TypeVar("T")

BUILTIN = "builtin:"
"""Prefix of model names that synthvlm builds locally from configs (random weights) instead of loading."""

BUILTIN_NAMES = (
    "tiny-aesthetic",
    "tiny-blip-caption",
    "tiny-blip-itm",
    "tiny-clip",
    "tiny-flux1",
    "tiny-flux2-klein",
    "tiny-llava",
    "tiny-llava-hf",
    "tiny-lm",
    "tiny-pixart-sigma",
    "tiny-qwen-image",
    "tiny-safety-checker",
    "tiny-sana",
    "tiny-sana-sprint",
    "tiny-sd3",
    "tiny-sdxl",
    "tiny-sdxl-refiner",
    "tiny-siglip",
    "tiny-z-image",
)
"""Every `builtin:NAME` model, each built by `synthvlm.models.builtin`."""

SHARED_BUILTIN_ENV = "SYNTHVLM_BUILTIN_MODELS"
"""When set, a folder where `builtin:` models are built once and shared by every run (else each run keeps
its own under RUN/models). The builds are deterministic, so either way a model's files hash the same."""


def _builder(name: str) -> Callable[[Path], Path]:
    from synthvlm.models.builtin import (
        aesthetic,
        blip,
        clip,
        flux1,
        flux2_klein,
        llava,
        lm,
        pixart,
        qwen_image,
        safety,
        sana,
        sd3,
        sdxl,
        siglip,
        z_image,
    )

    return {
        "tiny-aesthetic": aesthetic.build_tiny_aesthetic,
        "tiny-blip-caption": blip.build_tiny_blip_caption,
        "tiny-blip-itm": lm.build_tiny_blip_itm,
        "tiny-clip": clip.build_tiny_clip,
        "tiny-flux1": flux1.build_tiny_flux1,
        "tiny-flux2-klein": flux2_klein.build_tiny_flux2_klein,
        "tiny-llava": llava.build_tiny_llava,
        "tiny-llava-hf": llava.build_tiny_llava_hf,
        "tiny-lm": lm.build_tiny_lm,
        "tiny-pixart-sigma": pixart.build_tiny_pixart_sigma,
        "tiny-qwen-image": qwen_image.build_tiny_qwen_image,
        "tiny-safety-checker": safety.build_tiny_safety_checker,
        "tiny-sana": sana.build_tiny_sana,
        "tiny-sana-sprint": sana.build_tiny_sana_sprint,
        "tiny-sd3": sd3.build_tiny_sd3,
        "tiny-sdxl": sdxl.build_tiny_sdxl,
        "tiny-sdxl-refiner": sdxl.build_tiny_sdxl_refiner,
        "tiny-siglip": siglip.build_tiny_siglip,
        "tiny-z-image": z_image.build_tiny_z_image,
    }[name]


@dataclass(frozen=True)
class Source:
    """Where to load a configured model from."""

    name: str
    """The model string as configured (what provenance records)."""
    location: str
    """What `from_pretrained` takes: a folder path or a hub id."""
    local: bool
    """Whether `location` is a local folder (loaded with `local_files_only`)."""


def is_builtin(model: str) -> bool:
    return model.startswith(BUILTIN)


def check_builtin(model: str) -> None:
    """Refuse an unknown `builtin:` name, listing the valid ones."""
    if is_builtin(model) and model.removeprefix(BUILTIN) not in BUILTIN_NAMES:
        valid = ", ".join(BUILTIN + n for n in BUILTIN_NAMES)
        raise UserError(f"unknown builtin model {model!r}; valid: {valid}")


def builtin_dir(models_dir: Path) -> Path:
    """The folder builtin models are built into: the shared one when configured, else `models_dir`."""
    shared = os.environ.get(SHARED_BUILTIN_ENV)
    return Path(shared) if shared else Path(models_dir)


def resolve(model: str, *, models_dir: Path) -> Source:
    """A model string as `from_pretrained` takes it; `builtin:` models are built first (once)."""
    if is_builtin(model):
        check_builtin(model)
        name = model.removeprefix(BUILTIN)
        return Source(model, str(_builder(name)(builtin_dir(models_dir) / name)), True)
    if Path(model).is_dir():
        return Source(model, model, True)
    return Source(model, model, False)


def location(model: str, *, models_dir: Path) -> str:
    """`resolve(model).location`: for loaders that take a folder or hub id alike."""
    return resolve(model, models_dir=models_dir).location


_LOADED: dict[str, tuple[Hashable, Any]] = {}


def cached(role: str, key: Hashable, build: Callable[[], T]) -> T:
    """The model (or index, or client) of `role` in this worker process, built on first use.

    One rule for every role: a process holds one per role, and a different `key` for a role replaces the
    previous one, so a long-lived worker never accumulates models of configs it no longer runs.
    """
    held = _LOADED.get(role)
    if held is not None and held[0] == key:
        return held[1]
    _LOADED.pop(role, None)  # free the old one before building the new
    value = build()
    _LOADED[role] = (key, value)
    return value


def clear_cache() -> None:
    """Drop every loaded model of this process."""
    _LOADED.clear()


def hub_file(name: str) -> tuple[str, str]:
    """`REPO_ID/FILENAME` split into the hub repo id (its first two parts) and the file's path in the repo."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    owner, _, rest = name.partition("/")
    repo, _, filename = rest.partition("/")
    try:
        validate_repo_id(f"{owner}/{repo}")
    except HFValidationError:
        filename = ""
    if not filename:
        raise ValueError(f"{name!r} is neither a local file nor a hub file given as REPO_ID/FILENAME")
    return f"{owner}/{repo}", filename


def weights_file(name: str, *, models_dir: Path, in_folder: str) -> Path:
    """The local weights file `name` names: the file itself; `in_folder` inside a folder or a `builtin:`
    model (built first); else a hub file `REPO_ID/FILENAME` from the HF cache (downloaded only online)."""
    if is_builtin(name) or Path(name).is_dir():
        return Path(location(name, models_dir=models_dir)) / in_folder
    if Path(name).is_file():
        return Path(name)
    from huggingface_hub import hf_hub_download

    repo_id, filename = hub_file(name)
    return Path(hf_hub_download(repo_id, filename))


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a `.safetensors` file, or of a torch file loaded with `weights_only` (no code runs)."""
    import pickle

    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:
        # torch's text opens with advice to retry without weights_only (which runs the file's code): only
        # the unpickler's own reason is kept.
        reason = str(exc).partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0]
        reason = " ".join((reason or str(exc)).split())
    else:
        if isinstance(state, dict):
            return state
        reason = f"it holds a {type(state).__name__}"
    # raised here, not in the handler, so that the error carries no cause repeating it
    raise ValueError(f"{path} is not a torch state dict of tensors ({reason})")
