"""The diffusers text-to-image engine: one pipeline call per batch, per-image seeds, validity checks, retries.

Every image is seeded from (run seed, caption id, candidate index, attempt), never from batch position, so any
image can be regenerated from its provenance row (given the same batch layout: the caller fixes it).

Half precision: on CUDA "auto" loads bfloat16 (float16 on GPUs without it). bfloat16 has float32's range,
so the SDXL VAE decodes without the NaNs it produces in float16 and without diffusers' float32 upcast, which
costs a float32 decode per image. With an explicit float16 the VAE config's `force_upcast=True` makes
diffusers decode in float32 (or `generate.vae` names an fp16-safe VAE). Any NaN that still slips through is
caught by the validity check.

On CUDA `optimize` applies the speed settings (VAE slicing, channels-last UNet, optional FP8 and
torch.compile), and pixels are validated and quantised to uint8 on the device: only bytes cross to the host.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from synthvlm.config import GenerateConfig
from synthvlm.core.errors import UserError, loading_model
from synthvlm.core.seeds import derive_seed

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


def optimize(pipe: Any, *, compile: bool | str = False, quantize: str | None = None) -> None:
    """Speed settings for a loaded pipeline, in place; the engine applies them on CUDA.

    Always: the VAE decodes image by image (its activations at 1024² dwarf the UNet's) and the UNet runs
    channels-last. `quantize="fp8"`: the UNet's linear layers hold FP8 (e4m3) weights and quantise their
    inputs per row on the fly (torchao; layers whose shapes FP8 matmuls cannot take stay as they are).
    `compile=True`: the UNet through torch.compile in its default mode. `compile="max-autotune"`: the recipe
    diffusers documents for SDXL — fused QKV projections in the UNet and VAE, the inductor settings below,
    UNet and VAE decoder compiled whole (fullgraph) with autotuned kernels.

    Compiled graphs are static: each batch size compiles once per worker and keeps its own kernels (with
    torch's default, the second batch size seen would switch every later call to a dynamic-shape graph).
    A shard's last call is smaller unless `images_per_shard` is a multiple of `batch_size`.
    """
    import torch

    unet, vae = getattr(pipe, "unet", None), getattr(pipe, "vae", None)
    if hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
    if unet is None:
        return
    unet.to(memory_format=torch.channels_last)
    autotune = compile == "max-autotune"
    if autotune:
        for model in (unet, vae):
            if hasattr(model, "fuse_qkv_projections"):
                model.fuse_qkv_projections()
    if quantize == "fp8":
        try:
            from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
        except ImportError as e:
            raise UserError("generate.quantize: fp8 needs torchao: pip install 'synthvlm[fp8]'") from e
        quantize_(unet, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    if autotune:
        import torch._inductor.config as inductor

        inductor.conv_1x1_as_mm = True  # 1x1 convolutions as matmuls
        inductor.coordinate_descent_tuning = True
        inductor.coordinate_descent_check_all_directions = True
        inductor.epilogue_fusion = False
        pipe.unet = torch.compile(unet, mode="max-autotune", fullgraph=True, dynamic=False)
        if vae is not None:
            vae.decode = torch.compile(vae.decode, mode="max-autotune", fullgraph=True, dynamic=False)
    elif compile:
        pipe.unet = torch.compile(unet, dynamic=False)


class ImageGenerator:
    """Generates seeded, validated images with a diffusers pipeline (plus optional SDXL refiner).

    Construction is cheap (workers build one per config, through the model registry's cache); the
    pipelines load on first use and stay cached on the instance.
    """

    def __init__(self, config: GenerateConfig, *, models_dir: Path, run_seed: int) -> None:
        self.config = config.resolved()  # the preset's values for every field the config leaves unset
        self.models_dir = Path(models_dir)
        self.run_seed = run_seed
        self._pipes: tuple[Any, Any] | None = None
        self._provenance: Provenance | None = None
        self.max_batch: int | None = None
        """Largest pipeline call that fitted in device memory, once a larger one ran out (None: no limit)."""

    @property
    def device(self) -> str:
        """The torch device the pipelines run on ("auto" resolves to cuda when present)."""
        from synthvlm.core.devices import resolve_device

        return resolve_device(self.config.device)

    @property
    def dtype_name(self) -> str:
        """The torch dtype name the pipelines load in ("auto": bfloat16 on cuda, float32 elsewhere)."""
        if self.config.dtype != "auto":
            return self.config.dtype
        if not self.device.startswith("cuda"):
            return "float32"
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"

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

    def _load_one(self, name: str, revision: str | None) -> Any:
        import torch
        from diffusers import DiffusionPipeline

        source, local = self._source(name)
        kwargs: dict[str, Any] = {"dtype": getattr(torch, self.dtype_name), "use_safetensors": True}
        if local:
            kwargs["local_files_only"] = True
        else:
            kwargs["revision"] = revision
        if self.config.vae is not None:
            from diffusers import AutoencoderKL

            vae_source, vae_local = self._source(self.config.vae)
            vae_kwargs = {"local_files_only": True} if vae_local else {}
            with loading_model(self.config.vae):
                kwargs["vae"] = AutoencoderKL.from_pretrained(
                    vae_source, dtype=kwargs["dtype"], use_safetensors=True, **vae_kwargs
                )
        with loading_model(name):
            pipe = DiffusionPipeline.from_pretrained(source, **kwargs)
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True  # what little runs in float32 (schedulers, upcasts)
            torch.backends.cudnn.benchmark = True  # fixed shapes per run: pick the fastest conv kernels once
            optimize(pipe, compile=self.config.compile, quantize=self.config.quantize)
        return pipe

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
        """The (base, refiner-or-None) pipelines, loaded once per instance."""
        if self._pipes is None:
            self._check_quantize()
            cfg = self.config
            base = self._load_one(cfg.model, cfg.revision)
            refiner = self._load_one(cfg.refiner, cfg.refiner_revision) if cfg.refiner else None
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
        """(token count incl. BOS/EOS, truncated?) per prompt: the encoder silently drops the excess."""
        tokenizer = self._load()[0].tokenizer
        ids = tokenizer(list(prompts), truncation=False, verbose=False)["input_ids"]
        return [(len(seq), len(seq) > tokenizer.model_max_length) for seq in ids]

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
        """One pipeline call (base, then refiner if configured) for the whole batch."""
        import torch

        cfg = self.config
        base, refiner = self._load()
        n = len(prompts)
        common: dict[str, Any] = {
            "prompt": list(prompts),
            "negative_prompt": [cfg.negative_prompt] * n,
            "generator": [torch.Generator(self.device).manual_seed(s) for s in seeds],
            "num_inference_steps": cfg.steps,
            "guidance_scale": cfg.guidance,
        }
        size = {"width": cfg.width, "height": cfg.height}
        if (
            cfg.max_sequence_length is not None
            and "max_sequence_length" in inspect.signature(base.__call__).parameters
        ):
            common["max_sequence_length"] = cfg.max_sequence_length
        with torch.inference_mode():
            if refiner is None:
                return base(**common, **size, output_type="pt").images
            latents = base(**common, **size, denoising_end=cfg.high_noise_frac, output_type="latent").images
            return refiner(
                **common, image=latents, denoising_start=cfg.high_noise_frac, output_type="pt"
            ).images

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
        for attempt in range(self.config.max_attempts):
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
                image=None, status="failed", reason=reason, seed=seed, attempts=self.config.max_attempts
            )
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]
