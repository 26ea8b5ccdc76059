"""Cost projection: GPU-hours and wall time of a generate job, per generator, from per-image costs.

A generator's cost is, in order of preference: one measured in a run of this recipe (`--run`, its generate
timings), one given on the command line, or an anchor: a figure measured with synthvlm's benchmarks, else
a published one, each naming its source and device. Costs scale linearly in steps and pixels to the
recipe's settings; a mixed pool adds its generators' shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synthvlm.config import GeneratorConfig, RunConfig
from synthvlm.core import schema
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
    compiled: bool = False
    """Whether it was measured with `generate.compile` (anchors only: the closest one is taken)."""


@dataclass(frozen=True)
class Plan:
    """The projection and every assumption behind it."""

    captions: int
    images: int
    seconds_per_image: float
    """Mean over the pool's images."""
    gpu_hours: float
    wall_hours: float
    gpus: int
    gpu_type: str
    assumptions: list[str]
    generators: list[dict[str, Any]] = field(default_factory=list)
    """Per generator: name, images, seconds_per_image, gpu_hours, source."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
_MEGAPIXEL = 1024 * 1024
_SANA_SPRINT_CARD = (
    "published: SANA-Sprint paper (arXiv 2503.09641) and model card "
    "(huggingface.co/Efficient-Large-Model/Sana_Sprint_1.6B_1024px), 1024x1024 on one H100"
)
ANCHORS: dict[str, list[Measured]] = {
    "H100": [
        Measured(
            1.293,
            30,
            _MEGAPIXEL,
            "measured anchor: synthvlm generate stage on one H100 80GB, SDXL base architecture, bfloat16, "
            "batch 8, no torch.compile (bench/gpu_sdxl.py, docs/benchmarks.md)",
            _SDXL_BASE,
        ),
        Measured(
            0.985,
            30,
            _MEGAPIXEL,
            "measured anchor: synthvlm generate stage on one H100 80GB, SDXL base architecture, bfloat16, "
            "batch 16, torch.compile in its default mode (bench/gpu_sdxl.py, docs/benchmarks.md)",
            _SDXL_BASE,
            compiled=True,
        ),
        Measured(
            1.1,
            4,
            _MEGAPIXEL,
            f"{_SANA_SPRINT_CARD} (FLUX.1-schnell, 4 steps)",
            "black-forest-labs/FLUX.1-schnell",
        ),
        Measured(
            0.1,
            1,
            _MEGAPIXEL,
            f"{_SANA_SPRINT_CARD} (SANA-Sprint 1.6B, 1 step)",
            "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers",
        ),
    ]
}
"""Per GPU type: per-image costs of known models, measured with bench/gpu_sdxl.py or published (each names
its source); used for a generator no run or --seconds-per-image gives a cost for."""


def anchor(gpu_type: str, generator: GeneratorConfig) -> Measured:
    """The anchor for `gpu_type` and the generator's model closest to its compile setting; the source names
    any speed setting of the recipe that no anchor was measured with."""
    if gpu_type not in ANCHORS:
        raise UserError(
            f"no measured cost for {gpu_type}: pass --seconds-per-image or --run with generate timings"
        )
    gen = generator.resolved()
    known = [m for m in ANCHORS[gpu_type] if m.model == gen.model]
    if not known:
        models = ", ".join(sorted({m.model for m in ANCHORS[gpu_type] if m.model}))
        raise UserError(
            f"no measured or published cost of {gen.model} (generator {generator.label}) on {gpu_type}; "
            f"anchors exist for {models}: measure it (a short run, then --run RUN) or pass "
            "--seconds-per-image"
        )
    measured = min(known, key=lambda m: m.compiled != bool(gen.compile))
    unmeasured = [
        f"{key}: {value}"
        for key, value in (("compile", gen.compile), ("quantize", gen.quantize))
        if value in ("max-autotune", "fp8") or (key == "compile" and value and not measured.compiled)
    ]
    if unmeasured:
        source = f"{measured.source}; the recipe's {', '.join(unmeasured)} has no measured anchor yet"
        measured = replace(measured, source=source)
    return measured


def measured_from_run(run_dir: str | Path, config: RunConfig) -> dict[str, Measured]:
    """Mean model-seconds per image of each generator in a run's generate stage, with its steps and size."""
    run_dir = Path(run_dir)
    timing = sorted((run_dir / "generate" / "timing").glob("part-*.parquet"))
    data = sorted((run_dir / "generate" / "data").glob("part-*.parquet"))
    if not timing:
        raise UserError(
            f"{run_dir} has no generate timings yet: run `synthvlm generate --run {run_dir}` first"
        )
    seconds = {
        key: s
        for f in timing
        for key, s in zip(*pq.read_table(f, columns=["key", "seconds"]).to_pydict().values(), strict=True)
    }
    single = config.generate.pool()[0].label
    totals: dict[str, list[float]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for f in data:
        table = pq.read_table(f)
        names = schema.generator_column(table, single).to_pylist()
        for name, row in zip(names, table.select(["key", *_META]).to_pylist(), strict=True):
            totals.setdefault(name, []).append(seconds[row["key"]])
            meta.setdefault(name, row)
    return {
        name: Measured(
            sum(values) / len(values),
            meta[name]["steps"],
            meta[name]["width"] * meta[name]["height"],
            f"run {run_dir}",
            meta[name]["model_id"],
            meta[name]["refiner_id"],
        )
        for name, values in totals.items()
    }


_META = ("steps", "width", "height", "model_id", "refiner_id")


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


def costs(
    config: RunConfig,
    *,
    gpu_type: str,
    run: Path | None = None,
    seconds_per_image: float | None = None,
) -> dict[str, Measured]:
    """Each generator's per-image cost: measured in `run` where it has timings for it, else the one given
    (one generator only: a pool's generators do not cost the same), else its anchor."""
    pool = config.generate.pool()
    if seconds_per_image is not None:
        if len(pool) > 1:
            raise UserError(
                "--seconds-per-image is one generator's cost; a pool's generators differ: measure them in a "
                "short run of the recipe and pass --run"
            )
        gen = pool[0]
        given = Measured(seconds_per_image, gen.steps, gen.width * gen.height, "given on the command line")
        return {gen.label: given}
    measured = (
        measured_from_run(run, config) if run is not None and (run / "generate" / "timing").is_dir() else {}
    )
    return {g.label: measured.get(g.label) or anchor(gpu_type, g) for g in pool}


def project(
    config: RunConfig,
    *,
    captions: int,
    gpus: int,
    gpu_type: str,
    costs: Mapping[str, Measured],
    utilisation: float = 0.9,
) -> Plan:
    """Scale each generator's cost linearly in steps and pixels to its settings, weight it by its share of
    the candidates, and split the job over GPUs."""
    if gpus < 1 or captions < 0:
        raise UserError("--gpus must be at least 1 and the caption count non-negative")
    pool = config.generate.pool()
    images = captions * config.generate.candidates_per_caption
    rows, assumptions = [], []
    for gen in pool:
        measured = costs[gen.label]
        if measured.seconds_per_image <= 0:
            raise UserError(f"the per-image cost must be positive, got {measured.seconds_per_image} s")
        if measured.model is not None and measured.model != gen.model:
            raise UserError(
                f"the measured cost is for {measured.model}, generator {gen.label} generates with "
                f"{gen.model}: costs do not transfer between models; measure this model (a short run or "
                "bench/gpu_sdxl.py) and pass --seconds-per-image"
            )
        pixels = gen.width * gen.height
        per_image = measured.seconds_per_image * (gen.steps / measured.steps) * (pixels / measured.pixels)
        count = images * gen.share
        rows.append(
            {
                "generator": gen.label,
                "images": count,
                "seconds_per_image": per_image,
                "gpu_hours": count * per_image / 3600,
                "source": measured.source,
            }
        )
        who = f"{gen.label}: " if len(pool) > 1 else ""
        assumptions += [
            f"{who}per-image cost {measured.seconds_per_image:.3f} s measured at {measured.steps} steps, "
            f"{measured.pixels} px ({measured.source})",
            f"{who}scaled linearly to {gen.steps} steps and {pixels} px (attention grows faster than "
            "linearly with pixels, so a large change of resolution underestimates)",
        ]
        if gen.refiner and measured.model is not None and measured.refiner != gen.refiner:
            refined = round(gen.steps * (1 - gen.high_noise_frac))
            had = f"had refiner {measured.refiner}" if measured.refiner else "had no refiner"
            assumptions.append(
                f"{who}{refined} of the {gen.steps} steps run on the refiner ({gen.refiner}); the measured "
                f"cost {had}, so they are counted at the measured model's cost per step"
            )
    gpu_hours = sum(r["gpu_hours"] for r in rows)
    mix = ", ".join(f"{g.label} {g.share:.0%}" for g in pool)
    assumptions += [
        f"{captions} captions x {config.generate.candidates_per_caption} candidates = {images} images"
        + (f", shared {mix} (expected counts)" if len(pool) > 1 else ""),
        f"the measured device is a {gpu_type}; {gpus} of them at {utilisation:.0%} utilisation "
        "(loading, I/O, retries)",
        "scoring, selection and export are not counted (they are minutes next to generation)",
    ]
    mean = gpu_hours * 3600 / images if images else rows[0]["seconds_per_image"]
    return Plan(
        captions, images, mean, gpu_hours, gpu_hours / gpus / utilisation, gpus, gpu_type, assumptions, rows
    )
