"""Generator presets: each names its family, the model card's recommended settings and the model's licence.

Presets are data. A preset's settings fill the generator fields a recipe leaves unset; a family's own fields
(an SDXL refiner, FLUX.1's true CFG) exist only in presets of that family, so switching preset never carries
another family's settings. `plan` reads the per-image costs in `synthvlm.plan`, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from synthvlm.models.registry import BUILTIN

Commercial = Literal["yes", "no", "limited"]
"""Whether a model's licence lets its outputs be used commercially: yes, no, or under conditions (revenue
caps, use restrictions) the licence states."""


@dataclass(frozen=True)
class Preset:
    """A generator family plus the settings and licence of one checkpoint of it."""

    family: str
    """The generator family (`generate.families.FAMILIES`) whose pipeline runs this preset."""
    settings: Mapping[str, Any]
    """Generator fields (`config.GeneratorSettings`) this preset fills in when a recipe leaves them unset."""
    licence: str
    """The licence as the model card names it."""
    commercial: Commercial
    """Whether the licence allows commercial use of the outputs."""
    source: str = ""
    """Where the settings and licence come from (the model card); empty for the tiny offline models."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Conditions a user must know (what `limited` means for this licence)."""


_STABILITY_COMMUNITY = (
    "Stability AI Community License: free for research, non-commercial use, and commercial use by "
    "organisations or individuals with under USD 1M annual revenue; above that an Enterprise licence",
)
_OPENRAIL = ("CreativeML Open RAIL++-M: commercial use allowed, with the licence's use restrictions",)
_TINY = {"width": 64, "height": 64, "batch_size": 1}
"""The offline tiny models: random weights, 64 x 64, one image per call (fast on a CPU)."""
_TINY_LICENCE = {"licence": "apache-2.0", "commercial": "yes"}

PRESETS: dict[str, Preset] = {
    # The paper: SDXL base hands its latents to the refiner at 80% of the schedule.
    "sdxl": Preset(
        "sdxl",
        {
            "model": "stabilityai/stable-diffusion-xl-base-1.0",
            "refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",
            "steps": 60,
            "guidance": 20.0,
            "high_noise_frac": 0.8,
            "width": 1024,
            "height": 1024,
            "batch_size": 8,
        },
        "openrail++",
        "yes",
        "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0 (settings: arXiv 2407.20756)",
        _OPENRAIL,
    ),
    "sdxl-base": Preset(
        "sdxl",
        {
            "model": "stabilityai/stable-diffusion-xl-base-1.0",
            "steps": 60,
            "guidance": 20.0,
            "width": 1024,
            "height": 1024,
            "batch_size": 8,
        },
        "openrail++",
        "yes",
        "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0",
        _OPENRAIL,
    ),
    # SDXL base with ByteDance's 4-step distilled UNet; its scheduler must space timesteps "trailing".
    "sdxl-lightning": Preset(
        "sdxl",
        {
            "model": "stabilityai/stable-diffusion-xl-base-1.0",
            "denoiser": "ByteDance/SDXL-Lightning/sdxl_lightning_4step_unet.safetensors",
            "scheduler": {"timestep_spacing": "trailing"},
            "steps": 4,
            "guidance": 0.0,
            "width": 1024,
            "height": 1024,
            "batch_size": 8,
        },
        "openrail++",
        "yes",
        "https://huggingface.co/ByteDance/SDXL-Lightning",
        _OPENRAIL,
    ),
    "sd3-medium": Preset(
        "sd3",
        {
            "model": "stabilityai/stable-diffusion-3-medium-diffusers",
            "steps": 60,
            "guidance": 10.0,
            "max_sequence_length": 512,
            "width": 1024,
            "height": 1024,
            "batch_size": 8,
        },
        "stabilityai-ai-community",
        "limited",
        "https://huggingface.co/stabilityai/stable-diffusion-3-medium-diffusers",
        _STABILITY_COMMUNITY,
    ),
    "sd35-large": Preset(
        "sd3",
        {
            "model": "stabilityai/stable-diffusion-3.5-large",
            "steps": 28,
            "guidance": 3.5,
            "max_sequence_length": 256,
            "width": 1024,
            "height": 1024,
            "batch_size": 4,
        },
        "stabilityai-ai-community",
        "limited",
        "https://huggingface.co/stabilityai/stable-diffusion-3.5-large",
        _STABILITY_COMMUNITY,
    ),
    "sd35-large-turbo": Preset(
        "sd3",
        {
            "model": "stabilityai/stable-diffusion-3.5-large-turbo",
            "steps": 4,
            "guidance": 0.0,
            "max_sequence_length": 256,
            "width": 1024,
            "height": 1024,
            "batch_size": 4,
        },
        "stabilityai-ai-community",
        "limited",
        "https://huggingface.co/stabilityai/stable-diffusion-3.5-large-turbo",
        _STABILITY_COMMUNITY,
    ),
    "sd35-medium": Preset(
        "sd3",
        {
            "model": "stabilityai/stable-diffusion-3.5-medium",
            "steps": 40,
            "guidance": 4.5,
            "max_sequence_length": 256,
            "width": 1024,
            "height": 1024,
            "batch_size": 8,
        },
        "stabilityai-ai-community",
        "limited",
        "https://huggingface.co/stabilityai/stable-diffusion-3.5-medium",
        _STABILITY_COMMUNITY,
    ),
    "flux1-schnell": Preset(
        "flux1",
        {
            "model": "black-forest-labs/FLUX.1-schnell",
            "steps": 4,
            "guidance": 0.0,
            "max_sequence_length": 256,
            "width": 1024,
            "height": 1024,
            "batch_size": 4,
        },
        "apache-2.0",
        "yes",
        "https://huggingface.co/black-forest-labs/FLUX.1-schnell",
    ),
    "flux1-dev": Preset(
        "flux1",
        {
            "model": "black-forest-labs/FLUX.1-dev",
            "steps": 50,
            "guidance": 3.5,
            "max_sequence_length": 512,
            "width": 1024,
            "height": 1024,
            "batch_size": 4,
        },
        "flux-1-dev-non-commercial-license",
        "no",
        "https://huggingface.co/black-forest-labs/FLUX.1-dev",
        ("FLUX.1 [dev] Non-Commercial License: outputs may not be used commercially under it",),
    ),
    "flux2-klein-4b": Preset(
        "flux2-klein",
        {
            "model": "black-forest-labs/FLUX.2-klein-4B",
            "steps": 4,
            "guidance": 1.0,
            "max_sequence_length": 512,
            "width": 1024,
            "height": 1024,
            "batch_size": 4,
        },
        "apache-2.0",
        "yes",
        "https://huggingface.co/black-forest-labs/FLUX.2-klein-4B",
    ),
    "sana-1600m": Preset(
        "sana",
        {
            "model": "Efficient-Large-Model/Sana_1600M_1024px_diffusers",
            "steps": 20,
            "guidance": 4.5,
            "max_sequence_length": 300,
            "width": 1024,
            "height": 1024,
            "batch_size": 8,
        },
        "nsclv2-custom",
        "no",
        "https://huggingface.co/Efficient-Large-Model/Sana_1600M_1024px_diffusers",
        ("NVIDIA's Sana licence (NSCL v2-custom): non-commercial use only",),
    ),
    "sana-sprint": Preset(
        "sana-sprint",
        {
            "model": "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers",
            "steps": 2,
            "guidance": 4.5,
            "max_sequence_length": 300,
            "width": 1024,
            "height": 1024,
            "batch_size": 8,
        },
        "nsclv2-custom",
        "no",
        "https://huggingface.co/Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers",
        ("NVIDIA's Sana licence (NSCL v2-custom): non-commercial use only",),
    ),
    "pixart-sigma": Preset(
        "pixart-sigma",
        {
            "model": "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
            "steps": 20,
            "guidance": 4.5,
            "max_sequence_length": 300,
            "width": 1024,
            "height": 1024,
            "batch_size": 8,
        },
        "openrail++",
        "yes",
        "https://huggingface.co/PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
        _OPENRAIL,
    ),
    "qwen-image": Preset(
        "qwen-image",
        {
            "model": "Qwen/Qwen-Image",
            "steps": 50,
            "guidance": 4.0,
            "negative_prompt": " ",  # the model card's: guidance runs only with a negative prompt
            "max_sequence_length": 512,
            "width": 1328,
            "height": 1328,
            "batch_size": 2,
        },
        "apache-2.0",
        "yes",
        "https://huggingface.co/Qwen/Qwen-Image",
    ),
    "z-image-turbo": Preset(
        "z-image",
        {
            "model": "Tongyi-MAI/Z-Image-Turbo",
            "steps": 9,
            "guidance": 0.0,
            "max_sequence_length": 512,
            "width": 1024,
            "height": 1024,
            "batch_size": 4,
        },
        "apache-2.0",
        "yes",
        "https://huggingface.co/Tongyi-MAI/Z-Image-Turbo",
    ),
    # Random-weight architectures built locally: tests and the offline demos.
    "tiny": Preset(
        "sdxl", {"model": BUILTIN + "tiny-sdxl", "steps": 2, "guidance": 5.0, **_TINY}, **_TINY_LICENCE
    ),
    "tiny-refiner": Preset(
        "sdxl",
        {
            "model": BUILTIN + "tiny-sdxl",
            "refiner": BUILTIN + "tiny-sdxl-refiner",
            "steps": 4,
            "guidance": 5.0,
            "high_noise_frac": 0.5,
            **_TINY,
        },
        **_TINY_LICENCE,
    ),
    "tiny-sd3": Preset(
        "sd3", {"model": BUILTIN + "tiny-sd3", "steps": 2, "guidance": 5.0, **_TINY}, **_TINY_LICENCE
    ),
    "tiny-flux1": Preset(
        "flux1", {"model": BUILTIN + "tiny-flux1", "steps": 2, "guidance": 0.0, **_TINY}, **_TINY_LICENCE
    ),
    "tiny-flux2-klein": Preset(
        "flux2-klein",
        {"model": BUILTIN + "tiny-flux2-klein", "steps": 2, "guidance": 1.0, **_TINY},
        **_TINY_LICENCE,
    ),
    "tiny-sana": Preset(
        "sana", {"model": BUILTIN + "tiny-sana", "steps": 2, "guidance": 4.5, **_TINY}, **_TINY_LICENCE
    ),
    "tiny-sana-sprint": Preset(
        "sana-sprint",
        {"model": BUILTIN + "tiny-sana-sprint", "steps": 2, "guidance": 4.5, **_TINY},
        **_TINY_LICENCE,
    ),
    "tiny-pixart-sigma": Preset(
        "pixart-sigma",
        {"model": BUILTIN + "tiny-pixart-sigma", "steps": 2, "guidance": 4.5, **_TINY},
        **_TINY_LICENCE,
    ),
    "tiny-qwen-image": Preset(
        "qwen-image",
        {"model": BUILTIN + "tiny-qwen-image", "steps": 2, "guidance": 4.0, **_TINY},
        **_TINY_LICENCE,
    ),
    "tiny-z-image": Preset(
        "z-image", {"model": BUILTIN + "tiny-z-image", "steps": 2, "guidance": 0.0, **_TINY}, **_TINY_LICENCE
    ),
}
"""Every generator preset by name."""


def preset(name: str) -> Preset:
    """The preset called `name`; an unknown name raises ValueError listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown generate preset {name!r}; valid: {sorted(PRESETS)}")
    return PRESETS[name]
