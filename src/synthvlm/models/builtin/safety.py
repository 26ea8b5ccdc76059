"""Tiny Stable Diffusion safety checker built locally, so the nsfw scorer runs offline with both outcomes.

With random weights the cosine of an image embedding with a concept embedding varies little between
images (noise images embed almost alike), so thresholds chosen without regard to it flag nothing or
everything. Here the 17 concept and 3 special-care embeddings are seeded random vectors and their
thresholds are seeded draws from ranges set against what the seed-0 weights give: uniform noise images
get margins of about -0.1 (never flagged); solid colours span about -0.12 to +0.16, so red, green, blue,
purple and black are flagged while yellow, cyan, magenta, orange, white and gray pass; green and black
also pass a special-care threshold, which adds the checker's 0.01 adjustment to their concept scores.
"""

from __future__ import annotations

from pathlib import Path

from synthvlm.models.builtin.clip import build_once, seeded

SAFETY_DIMS = {"hidden": 32, "intermediate": 37, "layers": 2, "heads": 4, "image": 30, "patch": 2}
CONCEPT_THRESHOLDS = (0.28, 0.34)
"""Range of the 17 concept thresholds (`concept_embeds_weights`)."""
SPECIAL_THRESHOLDS = (0.24, 0.28)
"""Range of the 3 special-care thresholds (`special_care_embeds_weights`)."""
_MARKER = "model.safetensors"


def build_tiny_safety_checker(path: str | Path) -> Path:
    """Build (once) a tiny StableDiffusionSafetyChecker with its CLIP PIL image processor config; it loads
    with `StableDiffusionSafetyChecker.from_pretrained(path)` like the hub checkpoint."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessorPil

    d = SAFETY_DIMS

    def write(tmp: Path) -> None:
        common = {
            "hidden_size": d["hidden"],
            "intermediate_size": d["intermediate"],
            "num_hidden_layers": d["layers"],
            "num_attention_heads": d["heads"],
        }
        config = CLIPConfig(
            text_config=common,
            vision_config={**common, "image_size": d["image"], "patch_size": d["patch"]},
            projection_dim=d["hidden"],
        )

        def model() -> StableDiffusionSafetyChecker:
            import torch

            m = StableDiffusionSafetyChecker(config).eval()
            for embeds, weights, (low, high) in (
                (m.concept_embeds, m.concept_embeds_weights, CONCEPT_THRESHOLDS),
                (m.special_care_embeds, m.special_care_embeds_weights, SPECIAL_THRESHOLDS),
            ):
                embeds.data.copy_(torch.randn(embeds.shape))
                weights.data.copy_(low + (high - low) * torch.rand(weights.shape))
            return m

        seeded(model).save_pretrained(tmp)
        size = d["image"]
        CLIPImageProcessorPil(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size}
        ).save_pretrained(tmp)

    return build_once(path, write, marker=_MARKER)
