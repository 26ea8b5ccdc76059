"""The diffusers text-to-image engine: one pipeline call per batch, per-image seeds, validity checks, retries.

What differs between text-to-image families (how a call is built, what guidance means, how prompts are
counted, which speed settings apply) is the family's (`generate.families`); this module runs any of them.

Every image is seeded from (run seed, caption id, candidate index, attempt), never from batch position, so any
image can be regenerated from its provenance row (given the same batch layout: the caller fixes it).

Half precision: on CUDA "auto" loads bfloat16 (float16 on GPUs without it). bfloat16 has float32's range,
so the SDXL VAE decodes without the NaNs it produces in float16 and without diffusers' float32 upcast, which
costs a float32 decode per image. With an explicit float16 the VAE config's `force_upcast=True` makes
diffusers decode in float32 (or `generate.vae` names an fp16-safe VAE). Any NaN that still slips through is
caught by the validity check.

On CUDA the family's `optimize` applies the speed settings (VAE slicing, channels-last UNet, optional FP8
and torch.compile), and pixels are validated and quantised to uint8 on the device: only bytes cross to the
host.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from synthvlm.config import GeneratorConfig
from synthvlm.core.errors import UserError, loading_model
from synthvlm.core.seeds import derive_seed
from synthvlm.generate.families import FAMILIES, TRUNCATION_NOTICE, family_of_pipeline
from synthvlm.generate.families.base import DENOISER_FILE

_HASHED_SUFFIXES = (".safetensors", ".json", ".txt")


@dataclass(frozen=True)
class ImageResult:
    """One generated image, or the record of why no valid image came out of `attempts` tries."""

    image: Image.Image | None
    status: str
    reason: str | None
    seed: int
    attempts: int


@dataclass(frozen=True)
class Provenance:
    """What produced the images, so a candidate row can be regenerated and audited."""

    model_id: str
    model_revision: str
    refiner_id: str | None
    refiner_revision: str | None
    scheduler: str
    dtype: str
    """Weights dtype; "+fp8" when the UNet's linear layers run in FP8."""


def directory_revision(path: str | Path) -> str:
    """A content hash of a local model dir (weights, configs, tokenizer files): its revision without git."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(
        (f for f in path.rglob("*") if f.is_file() and f.suffix in _HASHED_SUFFIXES),
        key=lambda f: f.relative_to(path).as_posix(),
    )
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(file.stat().st_size.to_bytes(8, "little"))
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


def _hub_revision(repo_id: str) -> str:
    """The commit the HF cache resolved `repo_id` to, or "unknown" when the cache does not say."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "model_index.json")
    if not isinstance(cached, str):
        return "unknown"
    # Cache layout: .../models--org--name/snapshots/<commit>/model_index.json
    return Path(cached).parent.name


def _to_pixels(images: Any) -> tuple[np.ndarray, list[str | None]]:
    """Decoded images (n, 3, h, w) in [0, 1] on any device → uint8 (n, h, w, 3) on the host, and per image
    why it is unusable ("nan_output", "constant_image") or None.

    The float32 multiply-and-round is diffusers' numpy_to_pil's, done on the images' device, so the saved
    pixels are exactly what the pipeline's "pil" output would hold and only uint8 bytes cross to the host.
    """
    import torch

    images = images.float()
    finite = torch.isfinite(images).flatten(1).all(dim=1)
    pixels = (images.nan_to_num(0.0) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    constant = (pixels == pixels.flatten(1)[:, :1, None, None]).flatten(1).all(dim=1)
    reasons = [
        None if ok else ("nan_output" if not fin else "constant_image")
        for fin, ok in zip(finite.tolist(), (finite & ~constant).tolist(), strict=True)
    ]
    return pixels.contiguous().cpu().numpy(), reasons


def _drop_truncation_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(TRUNCATION_NOTICE)


def _silence_truncation_notices(pipe: Any) -> None:
    """Drop the pipeline's per-batch "was truncated" warnings (the stage counts truncation per prompt)."""
    logger = logging.getLogger(type(pipe).__module__)  # where the pipeline logs them
    if _drop_truncation_notice not in logger.filters:
        logger.addFilter(_drop_truncation_notice)


class ImageGenerator:
    """Generates seeded, validated images with one generator's diffusers pipeline (plus an SDXL refiner).

    Construction is cheap (workers build one per generator, through the model registry's cache); the
    pipelines load on first use and stay cached on the instance.
    """

    def __init__(
        self,
        generator: GeneratorConfig,
        *,
        models_dir: Path,
        run_seed: int,
        device: str = "auto",
        max_attempts: int = 3,
    ) -> None:
        self.config = generator.resolved()  # the preset's values for every field the config leaves unset
        self.family = FAMILIES[self.config.family.name]
        self.models_dir = Path(models_dir)
        self.run_seed = run_seed
        self.requested_device = device
        self.max_attempts = max_attempts
        self._pipes: tuple[Any, Any] | None = None
        self._provenance: Provenance | None = None
        self.max_batch: int | None = None
        """Largest pipeline call that fitted in device memory, once a larger one ran out (None: no limit)."""

    @property
    def device(self) -> str:
        """The torch device the pipelines run on ("auto" resolves to cuda when present)."""
        from synthvlm.core.devices import resolve_device

        return resolve_device(self.requested_device)

    @property
    def dtype_name(self) -> str:
        """The torch dtype name the pipelines load in ("auto": bfloat16 on cuda, float32 elsewhere)."""
        if self.config.dtype != "auto":
            return self.config.dtype
        if not self.device.startswith("cuda"):
            return "float32"
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"

    def _torch_dtypes(self) -> Any:
        """The dtype `from_pretrained` takes: one torch dtype, or per component where the family needs it
        (bfloat16 falls back to float32 on a device without it)."""
        import torch

        def dtype(name: str) -> Any:
            if name == "bfloat16" and self.device.startswith("cuda") and not torch.cuda.is_bf16_supported():
                name = "float32"
            return getattr(torch, name)

        wanted = self.family.dtypes(self.dtype_name)
        if isinstance(wanted, str):
            return dtype(wanted)
        return {component: dtype(name) for component, name in wanted.items()}

    def _source(self, name: str) -> tuple[str | Path, bool]:
        """Where to load `name` from, and whether that is a local directory."""
        from synthvlm.models import registry

        source = registry.resolve(name, models_dir=self.models_dir)
        return (Path(source.location), True) if source.local else (source.location, False)

    def _revision(self, name: str, revision: str | None) -> str:
        if revision is not None:
            return revision
        source, local = self._source(name)
        return directory_revision(source) if local else _hub_revision(str(source))

    def _load_one(self, field: str, name: str, revision: str | None, allowed: Sequence[str]) -> Any:
        import torch
        from diffusers import DiffusionPipeline

        source, local = self._source(name)
        dtypes = self._torch_dtypes()
        kwargs: dict[str, Any] = {"dtype": dtypes, "use_safetensors": True}
        if local:
            kwargs["local_files_only"] = True
        else:
            kwargs["revision"] = revision
        base_dtype = dtypes["default"] if isinstance(dtypes, dict) else dtypes
        if self.config.vae is not None:
            kwargs["vae"] = self._load_component(self.family.vae_class, self.config.vae, base_dtype)
        with loading_model(name):
            pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
        _silence_truncation_notices(pipe)
        if type(pipe).__name__ not in allowed:
            other = family_of_pipeline(type(pipe).__name__)
            presets = f"a {other.name} preset" if other is not None else "a preset of its family"
            raise UserError(
                f"{field} {name} is a {type(pipe).__name__}, not a pipeline of the {self.family.name} family "
                f"({', '.join(allowed)}) that preset {self.config.preset} runs: choose {presets}"
            )
        if field == "generate.model":
            self._replace_parts(pipe, base_dtype)
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True  # what little runs in float32 (schedulers, upcasts)
            torch.backends.cudnn.benchmark = True  # fixed shapes per run: pick the fastest conv kernels once
            self.family.optimize(pipe, compile=self.config.compile, quantize=self.config.quantize)
        return pipe

    def _load_component(self, class_name: str, name: str, dtype: Any) -> Any:
        """A replacement model (`generate.vae`) of a diffusers class, from a folder or hub id."""
        import diffusers

        source, local = self._source(name)
        with loading_model(name):
            return getattr(diffusers, class_name).from_pretrained(
                source, dtype=dtype, use_safetensors=True, **({"local_files_only": True} if local else {})
            )

    def _replace_parts(self, pipe: Any, dtype: Any) -> None:
        """`generate.denoiser` weights into the pipeline's own denoiser; `generate.scheduler` overrides."""
        cfg = self.config
        if cfg.denoiser is not None:
            from synthvlm.models import registry

            denoiser = getattr(pipe, self.family.denoiser)
            with loading_model(cfg.denoiser):
                file = registry.weights_file(
                    cfg.denoiser, models_dir=self.models_dir, in_folder=DENOISER_FILE
                )
                missing, unexpected = denoiser.load_state_dict(registry.read_state_dict(file), strict=False)
            if missing or unexpected:
                raise UserError(
                    f"generate.denoiser {cfg.denoiser} does not fit the {self.family.denoiser} of "
                    f"{cfg.model}: {len(missing)} missing and {len(unexpected)} unexpected weights"
                )
            denoiser.to(dtype)
        if cfg.scheduler is not None:
            pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **cfg.scheduler)

    def _check_quantize(self) -> None:
        """One-line errors for an FP8 request this worker cannot honour, before any weights load."""
        if self.config.quantize != "fp8":
            return
        import torch

        device = self.device
        if not device.startswith("cuda") or torch.cuda.get_device_capability(device) < (8, 9):
            what = torch.cuda.get_device_name(device) if device.startswith("cuda") else device
            raise UserError(
                f"generate.quantize: fp8 needs a CUDA GPU of compute capability 8.9 or newer "
                f"(H100, L40S, RTX 4090); this worker runs on {what}"
            )
        if self.dtype_name != "bfloat16":
            raise UserError(f"generate.quantize: fp8 needs dtype bfloat16 (or auto), not {self.dtype_name}")

    def _load(self) -> tuple[Any, Any]:
        """The (pipeline, refiner-or-None), loaded once per instance."""
        if self._pipes is None:
            self._check_quantize()
            cfg = self.config
            base = self._load_one("generate.model", cfg.model, cfg.revision, self.family.pipelines)
            refiner = None
            if cfg.refiner:
                allowed = self.family.refiner_pipelines
                refiner = self._load_one("generate.refiner", cfg.refiner, cfg.refiner_revision, allowed)
            self._pipes = (base, refiner)
        return self._pipes

    @property
    def provenance(self) -> Provenance:
        """Model ids and revisions: as given, else a local dir's content hash, else the cached hub commit."""
        # A hub id whose files the HF cache does not hold (e.g. loaded from a mirror) gets "unknown".
        if self._provenance is None:
            cfg = self.config
            base, _ = self._load()
            self._provenance = Provenance(
                model_id=cfg.model,
                model_revision=self._revision(cfg.model, cfg.revision),
                refiner_id=cfg.refiner,
                refiner_revision=self._revision(cfg.refiner, cfg.refiner_revision) if cfg.refiner else None,
                scheduler=type(base.scheduler).__name__,
                dtype=self.dtype_name + ("+fp8" if cfg.quantize == "fp8" else ""),
            )
        return self._provenance

    def prompt_tokens(self, prompts: Sequence[str]) -> list[tuple[int, bool]]:
        """(tokens, truncated?) per prompt, counted as the family's pipeline tokenizes it (`Family`)."""
        return self.family.prompt_tokens(self._load()[0], self.config, prompts)

    def _run(self, prompts: Sequence[str], seeds: Sequence[int]) -> Any:
        """Float images (n, 3, height, width) in [0, 1] on the device, in pipeline calls of at most
        `max_batch` prompts.

        A call that runs out of device memory is split in halves, and `max_batch` drops to the size that
        fitted, so later batches go straight to it: the configured batch size is a ceiling that the card's
        memory lowers. Seeds are per image, so a split changes which images share a call (which can move
        the low bits of their pixels), never which seed an image gets.
        """
        import torch

        limit = self.max_batch or len(prompts)
        if len(prompts) > limit:
            parts = [
                self._run(prompts[i : i + limit], seeds[i : i + limit]) for i in range(0, len(prompts), limit)
            ]
            return torch.cat(parts)
        try:
            return self._call(prompts, seeds)
        except torch.OutOfMemoryError:
            if len(prompts) == 1:
                raise
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            self.max_batch = len(prompts) // 2
            return self._run(prompts, seeds)

    def _call(self, prompts: Sequence[str], seeds: Sequence[int]) -> Any:
        """One pipeline call (the family's: base, then refiner if configured) for the whole batch."""
        import torch

        cfg = self.config
        generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        with torch.inference_mode():
            images = self.family.run(self._load(), cfg, prompts, generators)
        if tuple(images.shape[2:]) != (cfg.height, cfg.width):
            raise UserError(
                f"generate: {cfg.model} made {images.shape[3]}x{images.shape[2]} images, not the configured "
                f"{cfg.width}x{cfg.height}: choose a size its pipeline takes as it is"
            )
        return images

    def generate(
        self, prompts: Sequence[str], *, caption_ids: Sequence[str], candidate_indices: Sequence[int]
    ) -> list[ImageResult]:
        """Generate one batch; bad images are retried with the next attempt's seed, max_attempts in all."""
        if not len(prompts) == len(caption_ids) == len(candidate_indices):
            raise ValueError(
                f"prompts, caption_ids and candidate_indices differ in length: "
                f"{len(prompts)}, {len(caption_ids)}, {len(candidate_indices)}"
            )
        results: list[ImageResult | None] = [None] * len(prompts)
        failures: dict[int, tuple[str, int]] = {}
        pending = list(range(len(prompts)))
        for attempt in range(self.max_attempts):
            if not pending:
                break
            seeds = [
                derive_seed(self.run_seed, caption_ids[i], candidate_indices[i], attempt) for i in pending
            ]
            pixels, reasons = _to_pixels(self._run([prompts[i] for i in pending], seeds))
            retry = []
            for i, seed, image, reason in zip(pending, seeds, pixels, reasons, strict=True):
                if reason is None:
                    pil = Image.fromarray(image)
                    results[i] = ImageResult(
                        image=pil, status="ok", reason=None, seed=seed, attempts=attempt + 1
                    )
                else:
                    failures[i] = (reason, seed)
                    retry.append(i)
            pending = retry  # kept in input order, so a retry batch is laid out deterministically
        for i in pending:
            reason, seed = failures[i]
            results[i] = ImageResult(
                image=None, status="failed", reason=reason, seed=seed, attempts=self.max_attempts
            )
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]
