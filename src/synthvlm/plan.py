"""Cost projection: GPU-hours and wall time of a generate job from a measured per-image cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synthvlm.config import RunConfig
from synthvlm.core.errors import UserError


@dataclass(frozen=True)
class Measured:
    """A per-image cost and the settings it was measured at."""

    seconds_per_image: float
    steps: int
    pixels: int
    source: str
    model: str | None = None
    """The model the cost was measured with, when known; a projection for another model is refused."""
    refiner: str | None = None
    """The refiner the cost was measured with, if any."""


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


_SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
ANCHORS = {
    "H100": {
        False: Measured(
            1.293,
            30,
            1024 * 1024,
            "measured anchor: synthvlm generate stage on one H100 80GB, SDXL base architecture, bfloat16, "
            "batch 8, no torch.compile (bench/gpu_sdxl.py, docs/benchmarks.md)",
            _SDXL_BASE,
        ),
        True: Measured(
            0.985,
            30,
            1024 * 1024,
            "measured anchor: synthvlm generate stage on one H100 80GB, SDXL base architecture, bfloat16, "
            "batch 16, torch.compile in its default mode (bench/gpu_sdxl.py, docs/benchmarks.md)",
            _SDXL_BASE,
        ),
    }
}
"""Per-image costs measured with bench/gpu_sdxl.py, without and with `generate.compile`; used when no run
or --seconds-per-image gives one."""


def anchor(gpu_type: str, config: RunConfig) -> Measured:
    """The measured anchor for `gpu_type` closest to the recipe's compile and quantize settings."""
    if gpu_type not in ANCHORS:
        raise UserError(
            f"no measured cost for {gpu_type}: pass --seconds-per-image or --run with generate timings"
        )
    gen = config.generate.resolved()
    measured = ANCHORS[gpu_type][bool(gen.compile)]
    unmeasured = [
        f"{key}: {value}"
        for key, value in (("compile", gen.compile), ("quantize", gen.quantize))
        if value in ("max-autotune", "fp8")
    ]
    if unmeasured:
        source = f"{measured.source}; the recipe's {', '.join(unmeasured)} has no measured anchor yet"
        measured = replace(measured, source=source)
    return measured


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
    cols = ["steps", "width", "height", "model_id", "refiner_id"]
    meta = pq.read_table(data[0], columns=cols).slice(0, 1).to_pylist()[0]
    pixels = meta["width"] * meta["height"]
    return Measured(
        sum(seconds) / len(seconds),
        meta["steps"],
        pixels,
        f"run {run_dir}",
        meta["model_id"],
        meta["refiner_id"],
    )


def count_input_captions(config: RunConfig) -> int:
    """Captions the recipe's inputs hold, as ingest would accept them (before curation drops any)."""
    from synthvlm.readers import Record, UnreadableFileError, detect_format, expand_inputs, read

    cfg = config.ingest
    if not cfg.inputs:
        raise UserError("the recipe has no ingest.inputs to count; pass --captions N or --run RUN")
    try:
        files = expand_inputs(cfg.inputs)
        count = 0
        for path in files:
            fmt = detect_format(path) if cfg.format == "auto" else cfg.format
            records = read(path, fmt=fmt, max_caption_chars=cfg.max_caption_chars)
            count += sum(isinstance(r, Record) for r in records)
    except UnreadableFileError as exc:
        raise UserError(str(exc)) from None
    return min(count, cfg.limit) if cfg.limit is not None else count


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
    if measured.seconds_per_image <= 0:
        raise UserError(f"the per-image cost must be positive, got {measured.seconds_per_image} s")
    gen = config.generate.resolved()
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
    if gen.refiner and measured.model is not None and measured.refiner != gen.refiner:
        refined = round(gen.steps * (1 - gen.high_noise_frac))
        had = f"had refiner {measured.refiner}" if measured.refiner else "had no refiner"
        assumptions.insert(
            2,
            f"{refined} of the {gen.steps} steps run on the refiner ({gen.refiner}); the measured cost "
            f"{had}, so they are counted at the measured model's cost per step",
        )
    return Plan(
        captions, images, per_image, gpu_hours, gpu_hours / gpus / utilisation, gpus, gpu_type, assumptions
    )
