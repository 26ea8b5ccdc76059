"""Stable Diffusion XL: two CLIP text encoders, a UNet, classifier-free guidance, an optional refiner that
finishes the last part of the schedule from the base model's latents (the SynthVLM paper's setting)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthvlm.core.needs import Model, Need
from synthvlm.generate.families.base import Family, Settings


class Sdxl(Family):
    name = "sdxl"
    title = "Stable Diffusion XL"
    pipelines = ("StableDiffusionXLPipeline",)
    denoiser = "unet"
    refiner = True
    size_multiple = 8
    fuses_qkv = True
    tiny = "tiny-sdxl"
    refiner_pipelines = ("StableDiffusionXLImg2ImgPipeline",)

    def _part_needs(self, gen: Settings, *, where: str) -> list[Need]:
        if gen.refiner is None:
            return []
        return [
            Model(
                f"{where}.refiner",
                gen.refiner,
                "pipeline",
                gen.refiner_revision,
                "tiny-sdxl-refiner",
                pipelines=self.refiner_pipelines,
            )
        ]

    def run(
        self, pipes: tuple[Any, Any], gen: Settings, prompts: Sequence[str], generators: list[Any]
    ) -> Any:
        base, refiner = pipes
        args = self.call_arguments(base, gen, prompts)
        if refiner is None:
            return base(**args, generator=generators, output_type="pt").images
        # The base model denoises the first high_noise_frac of the schedule; the refiner takes its latents.
        latents = base(
            **args, generator=generators, denoising_end=gen.high_noise_frac, output_type="latent"
        ).images
        args = {k: v for k, v in args.items() if k not in ("width", "height")}
        return refiner(
            **args, generator=generators, image=latents, denoising_start=gen.high_noise_frac, output_type="pt"
        ).images

    def token_cap(self, pipe: Any, gen: Settings) -> int:
        return pipe.tokenizer.model_max_length  # CLIP's 77: the encoders silently drop the rest
