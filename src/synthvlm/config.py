"""The run config: YAML in, validated pydantic models out, presets applied as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthvlm.errors import UserError

BUILTIN = "builtin:"
"""Prefix of model names that synthvlm builds locally from configs (random weights) instead of loading."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestConfig(_Model):
    """How caption files are read into the pool."""

    inputs: list[str] = Field(default_factory=list)
    format: str = "auto"
    max_caption_chars: int = Field(2000, gt=0)
    shard_rows: int = Field(10_000, gt=0)
    skip_bad_files: bool = False


class FilterSpec(_Model):
    """One curation filter: a registered name plus its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class PerplexityConfig(_Model):
    """Drop captions a causal LM finds too unlikely (hub id or local path; `builtin:tiny-lm` in tests)."""

    backend: Literal["transformers", "kenlm"] = "transformers"
    model: str
    tokenizer: str | None = None
    revision: str | None = None
    max_perplexity: float = Field(gt=0)
    batch_size: int = Field(32, gt=0)
    max_tokens: int = Field(128, gt=1)
    device: str = "auto"


class AlignmentConfig(_Model):
    """Original-pair alignment: CLIP cosine and BLIP image-text matching against the source image."""

    clip_model: str | None = "openai/clip-vit-base-patch32"
    min_clip: float = 0.28
    itm_model: str | None = "Salesforce/blip-itm-base-coco"
    min_itm: float = Field(0.8, ge=0, le=1)
    image_root: str | None = None
    batch_size: int = Field(16, gt=0)
    device: str = "auto"


class NearDupConfig(_Model):
    """MinHash LSH near-duplicate removal over normalised text; the first caption of a cluster stays."""

    shingle: Literal["word", "char"] = "word"
    shingle_size: int = Field(3, gt=0)
    num_perm: int = Field(128, gt=1)
    threshold: float = Field(0.8, gt=0, lt=1)
    seed: int = 1


class DecontamConfig(_Model):
    """Drop captions sharing word n-grams with evaluation captions (files any ingest reader reads)."""

    eval_files: list[str] = Field(min_length=1)
    format: str = "auto"
    ngram: int = Field(8, gt=0)
    threshold: float = Field(0.5, gt=0, le=1)


class JudgeConfig(_Model):
    """LLM Yes/No judge: an OpenAI-compatible endpoint or a local transformers model, answers cached."""

    backend: Literal["openai", "transformers"] = "openai"
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    template: str | None = None
    concurrency: int = Field(8, gt=0)
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff: float = Field(1.0, ge=0)
    max_new_tokens: int = Field(4, gt=0)
    batch_size: int = Field(8, gt=0)
    device: str = "auto"


class CurateConfig(_Model):
    """Caption curation: a recipe of filters, exact dedup, then the optional model and set-based steps."""

    recipe: str = "synthvlm"
    filters: list[FilterSpec] | None = None
    dedup: bool = True
    perplexity: PerplexityConfig | None = None
    alignment: AlignmentConfig | None = None
    near_dup: NearDupConfig | None = None
    decontamination: DecontamConfig | None = None
    judge: JudgeConfig | None = None


class CaptionConfig(_Model):
    """Captions for real images from an image-to-text model (BLIP-2 in the paper); ingest reads its shards."""

    inputs: list[str] = Field(default_factory=list)
    model: str = "Salesforce/blip2-opt-2.7b"
    prompt: str | None = None
    batch_size: int = Field(8, gt=0)
    max_new_tokens: int = Field(30, gt=0)
    shard_rows: int = Field(1000, gt=0)
    device: str = "auto"


GENERATE_PRESETS: dict[str, dict[str, Any]] = {
    # The paper: SDXL base hands its latents to the refiner at 80% of the schedule.
    "sdxl": {
        "model": "stabilityai/stable-diffusion-xl-base-1.0",
        "refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",
        "steps": 60,
        "guidance": 20.0,
        "high_noise_frac": 0.8,
        "width": 1024,
        "height": 1024,
        "batch_size": 8,
    },
    "sdxl-base": {
        "model": "stabilityai/stable-diffusion-xl-base-1.0",
        "steps": 60,
        "guidance": 20.0,
        "width": 1024,
        "height": 1024,
        "batch_size": 8,
    },
    "sd3-medium": {
        "model": "stabilityai/stable-diffusion-3-medium-diffusers",
        "steps": 60,
        "guidance": 10.0,
        "max_sequence_length": 512,
        "width": 1024,
        "height": 1024,
        "batch_size": 8,
    },
    # Random-weight SDXL architecture built locally: tests and the offline demo.
    "tiny": {
        "model": BUILTIN + "tiny-sdxl",
        "steps": 2,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
        "batch_size": 1,
    },
    # Same, with a tiny refiner, to exercise the base -> refiner hand-off.
    "tiny-refiner": {
        "model": BUILTIN + "tiny-sdxl",
        "refiner": BUILTIN + "tiny-sdxl-refiner",
        "steps": 4,
        "guidance": 5.0,
        "high_noise_frac": 0.5,
        "width": 64,
        "height": 64,
        "batch_size": 1,
    },
}


class GenerateConfig(_Model):
    """Text-to-image generation. Fields left unset take the preset's value."""

    preset: str = "sdxl"
    model: str | None = None
    revision: str | None = None
    refiner: str | None = None
    refiner_revision: str | None = None
    steps: int | None = Field(None, gt=0)
    guidance: float | None = None
    high_noise_frac: float | None = Field(None, gt=0, lt=1)
    width: int | None = Field(None, gt=0, multiple_of=8)
    height: int | None = Field(None, gt=0, multiple_of=8)
    max_sequence_length: int | None = None
    negative_prompt: str = ""
    candidates_per_caption: int = Field(1, gt=0)
    batch_size: int | None = Field(None, gt=0)
    """Images per pipeline call, a ceiling: a call that runs out of device memory is split. The hub presets
    use 8 (on an H100, SDXL at 1024² takes 1.29 s/image at batch 8, 1.94x a batch-1 diffusers loop; batch 16
    adds nothing unless compiled)."""
    images_per_shard: int = Field(1000, gt=0)
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    image_format: Literal["jpg", "png", "webp"] = "jpg"
    jpeg_quality: int = Field(95, ge=1, le=100)
    max_attempts: int = Field(3, gt=0)
    vae: str | None = None
    """Replacement VAE (hub id or folder), e.g. madebyollin/sdxl-vae-fp16-fix: fp16 decoding without NaNs."""
    compile: bool | Literal["max-autotune"] = False
    """torch.compile on CUDA: slower first batch, faster steady state. true: the UNet in torch's default mode
    (1.3x at batch 16 on an H100). "max-autotune": the settings diffusers documents for SDXL — QKV
    projections fused, UNet and VAE decoder compiled whole with autotuned kernels; minutes per worker.
    Each batch size compiles once: keep `images_per_shard` a multiple of `batch_size`."""
    quantize: Literal["fp8"] | None = None
    """"fp8": the UNet's linear layers in FP8 (e4m3) with per-row dynamic scales (torchao). Needs a CUDA GPU
    of compute capability 8.9+ (H100, L40S, RTX 4090), bfloat16, and `pip install 'synthvlm[fp8]'`. Meant with
    `compile`: torchao fuses the activation scaling into the matmuls only in compiled graphs."""

    @model_validator(mode="after")
    def _apply_preset(self) -> GenerateConfig:
        if self.preset not in GENERATE_PRESETS:
            raise ValueError(f"unknown generate preset {self.preset!r}; valid: {sorted(GENERATE_PRESETS)}")
        for key, value in GENERATE_PRESETS[self.preset].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.model is None:
            raise ValueError("generate.model is not set and the preset does not set it")
        return self


class ScoreConfig(_Model):
    """CLIPScore + lambda * SSIM, as the paper's code computes them."""

    clip_model: str = "openai/clip-vit-base-patch32"
    clip_revision: str | None = None
    prefix: str = "A photo depicts "
    ssim_size: int = Field(768, gt=0)
    ssim_low: int = Field(336, gt=0)
    ssim_weight: float = 0.5
    batch_size: int = Field(32, gt=0)
    device: str = "auto"


class SelectConfig(_Model):
    """Best-of-N per caption, then a global cut: exactly one of top_k, fraction, threshold."""

    key: Literal["weighted", "clip", "ssim"] = "weighted"
    best_of_n: bool = True
    top_k: int | None = Field(None, gt=0)
    fraction: float | None = Field(None, gt=0, le=1)
    threshold: float | None = None

    @model_validator(mode="after")
    def _one_cut(self) -> SelectConfig:
        given = [k for k in ("top_k", "fraction", "threshold") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"select takes one of top_k, fraction, threshold; got {given}")
        if not given:
            object.__setattr__(self, "top_k", 100_000)
        return self


class ExportConfig(_Model):
    """Which trainer-ready formats to write, and how images are re-encoded."""

    formats: list[Literal["llava", "webdataset", "parquet"]] = Field(
        default_factory=lambda: ["llava", "webdataset", "parquet"], min_length=1
    )
    out: str | None = None
    resize: int | None = Field(None, gt=0)
    jpeg_quality: int = Field(95, ge=1, le=100)
    instructions: list[str] | None = None
    rows_per_shard: int = Field(1000, gt=0)

    @model_validator(mode="after")
    def _distinct_formats(self) -> ExportConfig:
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"export.formats names a format twice: {self.formats}")
        return self


class RayConfig(_Model):
    """Where the Ray executor runs and what each worker asks for; never part of any stage's fingerprint."""

    address: str | None = None  # None: start a local Ray; "auto" or "ray://HOST:PORT": join a cluster
    actors: int | None = Field(None, gt=0)  # per model stage; None: one per GPU in the cluster, else 2
    num_cpus: float = Field(1, gt=0)
    num_gpus: float | None = Field(None, ge=0)  # per actor; None: 1 when the cluster has GPUs, else 0
    memory_gb: float | None = Field(None, gt=0)  # per actor or task, so Ray never packs too many on a node
    max_retries: int = Field(2, ge=0)  # extra attempts of a failing or lost task before the run fails
    # torch intra-op threads per worker. CPU kernels' float results depend on it, so None takes the driver's
    # count: outputs then match a local run on the driver's machine byte for byte.
    threads: int | None = Field(None, gt=0)


class RunConfig(_Model):
    """A whole synthvlm job; saved resolved as RUN/config.yaml."""

    seed: int = 0
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    caption: CaptionConfig = Field(default_factory=CaptionConfig)

    def updated(self, section: str, **changes: Any) -> RunConfig:
        """A copy with some fields of one section replaced (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self
        data = self.model_dump()
        data[section].update(changes)
        return parse_config(data, origin="command line")


def parse_config(data: dict[str, Any], *, origin: str) -> RunConfig:
    """Validate a config mapping; a user mistake becomes one readable `UserError`."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise UserError(f"{origin}: invalid config: {problems}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML recipe file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    ingest = data.get("ingest")
    if isinstance(ingest, dict) and isinstance(ingest.get("inputs"), list):
        # Relative inputs are relative to the recipe file, so a recipe works from any directory.
        base = path.resolve().parent
        ingest["inputs"] = [str(base / p) if isinstance(p, str) else p for p in ingest["inputs"]]
    return parse_config(data, origin=str(path))


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (every default and preset value written out)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
