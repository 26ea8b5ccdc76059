"""Cost projection: GPU-hours and wall time of a generate job from a measured per-image cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synthvlm.config import RunConfig
from synthvlm.errors import UserError


@dataclass(frozen=True)
class Measured:
    """A per-image cost and the settings it was measured at."""

    seconds_per_image: float
    steps: int
    pixels: int
    source: str
    model: str | None = None
    """The model the cost was measured with, when known; a projection for another model is refused."""


@dataclass(frozen=True)
class Plan:
    """The projection and every assumption behind it."""

    captions: int
    images: int
    seconds_per_image: float
    gpu_hours: float
    wall_hours: float
    gpus: int
    gpu_type: str
    assumptions: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


ANCHORS = {
    "H100": Measured(
        1.293,
        30,
        1024 * 1024,
        "measured anchor: synthvlm generate stage on one H100 80GB, SDXL base architecture, bfloat16, "
        "batch 8, no torch.compile (bench/gpu_sdxl.py, docs/benchmarks.md)",
        "stabilityai/stable-diffusion-xl-base-1.0",
    )
}
"""Per-image costs measured with bench/gpu_sdxl.py; used when no run or --seconds-per-image gives one."""


def measured_from_run(run_dir: str | Path) -> Measured:
    """Mean model-seconds per image of a run's generate stage, with its steps and size."""
    run_dir = Path(run_dir)
    timing = sorted((run_dir / "generate" / "timing").glob("part-*.parquet"))
    data = sorted((run_dir / "generate" / "data").glob("part-*.parquet"))
    if not timing:
        raise UserError(
            f"{run_dir} has no generate timings yet: run `synthvlm generate --run {run_dir}` first"
        )
    seconds = [s for f in timing for s in pq.read_table(f, columns=["seconds"]).column("seconds").to_pylist()]
    cols = ["steps", "width", "height", "model_id"]
    meta = pq.read_table(data[0], columns=cols).slice(0, 1).to_pylist()[0]
    pixels = meta["width"] * meta["height"]
    return Measured(sum(seconds) / len(seconds), meta["steps"], pixels, f"run {run_dir}", meta["model_id"])


def project(
    config: RunConfig,
    *,
    captions: int,
    gpus: int,
    gpu_type: str,
    measured: Measured,
    utilisation: float = 0.9,
) -> Plan:
    """Scale the measured cost linearly in steps and pixels to the configured job and split it over GPUs."""
    if gpus < 1 or captions < 0:
        raise UserError("--gpus must be at least 1 and the caption count non-negative")
    gen = config.generate
    if measured.model is not None and measured.model != gen.model:
        raise UserError(
            f"the measured cost is for {measured.model}, the recipe generates with {gen.model}: costs do not "
            "transfer between models; measure this model (a short run or bench/gpu_sdxl.py) and pass "
            "--seconds-per-image"
        )
    pixels = gen.width * gen.height
    per_image = measured.seconds_per_image * (gen.steps / measured.steps) * (pixels / measured.pixels)
    images = captions * gen.candidates_per_caption
    gpu_hours = images * per_image / 3600
    assumptions = [
        f"per-image cost {measured.seconds_per_image:.3f} s measured at {measured.steps} steps, "
        f"{measured.pixels} px ({measured.source})",
        f"scaled linearly to {gen.steps} steps and {pixels} px (attention grows faster than linearly "
        "with pixels, so a large change of resolution underestimates)",
        f"{captions} captions x {gen.candidates_per_caption} candidates = {images} images",
        f"the measured device is a {gpu_type}; {gpus} of them at {utilisation:.0%} utilisation "
        "(loading, I/O, retries)",
        "scoring, selection and export are not counted (they are minutes next to generation)",
    ]
    return Plan(
        captions, images, per_image, gpu_hours, gpu_hours / gpus / utilisation, gpus, gpu_type, assumptions
    )
