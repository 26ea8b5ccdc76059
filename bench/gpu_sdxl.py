"""SDXL at real size on a GPU: a naive diffusers batch-1 loop versus synthvlm's generate stage.

Builds the published SDXL base architecture (bench/configs/sdxl-base-1.0.json) with random weights —
FLOPs and memory do not depend on weight values — saves it once as safetensors, then measures, in the
same process and on the same device:

- naive: `StableDiffusionXLPipeline.from_pretrained(..., dtype=float16)`, one prompt per call, default
  settings otherwise (what the model card shows);
- ours: the generate stage of a synthvlm run (batched, per-image seeds, JPEG + tar + metadata written), once
  per --variants entry: a batch size, optionally followed by ":" and options joined by "+": "compile"
  (`generate.compile: true`), "max-autotune" (`generate.compile: max-autotune`), "fp8"
  (`generate.quantize: fp8`), "nchw" (the UNet left in PyTorch's default memory layout instead of
  channels-last). Example: `--variants 8,16:compile,16:max-autotune+fp8`.

Pipeline loading and the first batch (warm-up, compilation) are excluded from every variant. Prints one JSON
row per variant — s/image, images/s, the ratio to the naive loop, model FLOP utilisation against the chip's
dense bf16/fp16 peak, peak GPU memory — and appends it to --out as soon as it is measured.

    python bench/gpu_sdxl.py                      # H100-class GPU, 1024², 30 steps
    python bench/gpu_sdxl.py --tiny --device cpu  # the same code path at toy size (tests use this)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs" / "sdxl-base-1.0.json"

# UNet forward at 1024² ≈ 6.76 TFLOP; CFG doubles it; VAE decode at 1024² ≈ 10.5 TFLOP (scaled by pixels).
UNET_TFLOP_1024 = 6.76
VAE_TFLOP_1024 = 10.5
OPTIONS = {
    "compile": "torch.compile",
    "max-autotune": "torch.compile max-autotune, fused QKV",
    "fp8": "FP8 UNet linears",
    "nchw": "UNet in NCHW layout",
}
"""Variant options and how a result row names them."""
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
"""Dense bf16/fp16 tensor-core peaks (TFLOP/s) by name fragment of torch.cuda.get_device_name()."""


def build_sdxl(path: Path, *, tiny: bool, dtype: Any, device: str) -> Path:
    """Random-weight SDXL base (published config, or the tiny test config) saved as a local pipeline.

    The weights are initialised on `device`: random init of 3.5B parameters takes minutes on a CPU.
    """
    if tiny:
        from synthvlm.models.builtin.sdxl import build_tiny_sdxl

        return build_tiny_sdxl(path)
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from synthvlm.models.builtin.clip import build_clip_tokenizer

    cfg = json.loads(CONFIGS.read_text())
    torch.manual_seed(0)
    tok_dir = build_clip_tokenizer(path.parent / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    with torch.device(device):
        pipe = StableDiffusionXLPipeline(
            unet=UNet2DConditionModel(**cfg["unet"]).to(dtype),
            vae=AutoencoderKL(**cfg["vae"]).to(dtype),
            text_encoder=CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])).to(dtype),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"])).to(dtype),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            scheduler=EulerDiscreteScheduler(**cfg["scheduler"]),
        )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def flops_per_image(steps: int, size: int) -> float:
    """Model FLOPs of one image with classifier-free guidance."""
    scale = (size * size) / (1024 * 1024)
    return (2 * UNET_TFLOP_1024 * steps + VAE_TFLOP_1024) * scale * 1e12


def peak_flops(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((p * 1e12 for key, p in PEAK_TFLOPS.items() if key in name), None)


def naive_loop(model_dir: Path, prompts: list[str], *, steps: int, size: int, device: str) -> float:
    """Seconds per image of one-prompt-per-call diffusers, after a warm-up call."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = StableDiffusionXLPipeline.from_pretrained(model_dir, dtype=dtype, use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)

    def one(i: int) -> None:
        g = torch.Generator(device).manual_seed(i)
        pipe(prompts[i], num_inference_steps=steps, height=size, width=size, guidance_scale=5.0, generator=g)

    one(0)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(len(prompts)):
        one(i)
    _sync(device)
    return (time.perf_counter() - t0) / len(prompts)


def our_stage(
    model_dir: Path,
    prompts: list[str],
    *,
    steps: int,
    size: int,
    device: str,
    batch_size: int,
    compile: bool | str = False,
    quantize: str | None = None,
    channels_last: bool = True,
    work: Path,
) -> float:
    """Seconds per image of the generate stage (tar, JPEG, metadata included), model load excluded."""
    from synthvlm import pipeline
    from synthvlm.config import RunConfig
    from synthvlm.core.driver import run_stage
    from synthvlm.executors import LocalExecutor
    from synthvlm.models import registry
    from synthvlm.stages.generate import GenerateStage, _generator

    work.mkdir(parents=True, exist_ok=True)
    captions = work / "prompts.jsonl"
    captions.write_text(
        "".join(json.dumps({"id": f"p{i}", "caption": p}) + "\n" for i, p in enumerate(prompts))
    )
    config = RunConfig.model_validate(
        {
            "ingest": {"inputs": [str(captions)]},
            "curate": {"recipe": "none", "dedup": False},
            "generate": {
                "preset": "sdxl-base",
                "model": str(model_dir),
                "steps": steps,
                "width": size,
                "height": size,
                "guidance": 5.0,
                "batch_size": batch_size,
                "images_per_shard": len(prompts),
                "device": device,
                "compile": compile,
                "quantize": quantize,
            },
        }
    )
    run = work / "run"
    pipeline.run(run, config, stages=["ingest", "curate"], progress=False)
    stage = GenerateStage(run, config)
    gen = _generator(stage, stage.config.generate.pool()[0])
    _ = gen.provenance  # loads the pipeline and hashes the weights once, as a worker does before a shard
    if not channels_last:
        import torch

        gen._load()[0].unet.to(memory_format=torch.contiguous_format)
    gen.generate(
        prompts[:batch_size], caption_ids=["warm"] * batch_size, candidate_indices=list(range(batch_size))
    )
    _sync(device)
    t0 = time.perf_counter()
    run_stage(stage, LocalExecutor(progress=False))
    _sync(device)
    seconds = (time.perf_counter() - t0) / len(prompts)
    registry.clear_cache()
    del gen
    _free(device)
    return seconds


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _peak_gib(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 1)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-images", type=int, default=8)
    parser.add_argument(
        "--batches", type=int, default=2, help="timed batches per variant of ours (at least --naive-images)"
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--variants",
        default="8",
        help=f"comma-separated batch sizes, each optionally followed by :OPTION[+OPTION...] from {OPTIONS}",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy-size models: checks the code path on CPU")
    parser.add_argument("--out", type=Path, help="append each JSON row to this file as it is measured")
    args = parser.parse_args(argv)
    import torch

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    variants = [
        (int(v.partition(":")[0]), tuple(filter(None, v.partition(":")[2].split("+"))))
        for v in args.variants.split(",")
    ]
    if unknown := {opt for _, opts in variants for opt in opts} - set(OPTIONS):
        parser.error(f"unknown variant option(s) {sorted(unknown)}; valid: {', '.join(OPTIONS)}")

    def timed_images(batch_size: int) -> int:
        return max(batch_size * args.batches, -(-args.naive_images // batch_size) * batch_size)

    n_prompts = max(args.naive_images, *(timed_images(b) for b, _ in variants))
    prompts = [f"a photo of object number {i} on a wooden table" for i in range(n_prompts)]
    peak = peak_flops(args.device)
    flops = flops_per_image(args.steps, args.size)
    label = f"SDXL {args.size}², {args.steps} steps" + (" (tiny)" if args.tiny else "")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        row = {"device": device_name, **row}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    def mfu(seconds: float) -> str:
        return f"; MFU {flops / seconds / peak:.1%}" if peak and not args.tiny else ""

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        model_dir = build_sdxl(work / "sdxl", tiny=args.tiny, dtype=dtype, device=args.device)
        print(f"built and saved the pipeline in {time.perf_counter() - t0:.0f} s", flush=True)
        _free(args.device)
        _peak_gib(args.device)
        naive = naive_loop(
            model_dir, prompts[: args.naive_images], steps=args.steps, size=args.size, device=args.device
        )
        _free(args.device)
        emit(
            {
                "name": f"{label}, diffusers batch-1 loop, float16",
                "s_per_image": naive,
                "notes": f"{1 / naive:.2f} images/s" + mfu(naive),
                "peak_gib": _peak_gib(args.device),
            }
        )
        for batch_size, options in variants:
            ours = our_stage(
                model_dir,
                prompts[: timed_images(batch_size)],
                steps=args.steps,
                size=args.size,
                device=args.device,
                batch_size=batch_size,
                compile="max-autotune" if "max-autotune" in options else "compile" in options,
                quantize="fp8" if "fp8" in options else None,
                channels_last="nchw" not in options,
                work=work / f"b{batch_size}-{'-'.join(options) or 'default'}",
            )
            emit(
                {
                    "name": f"{label}, synthvlm generate stage, batch {batch_size}"
                    + "".join(f", {OPTIONS[o]}" for o in options),
                    "ours": ours,
                    "peer": naive,
                    "peer_name": "diffusers batch-1 loop",
                    "unit": "s/image",
                    "ratio": naive / ours,
                    "notes": f"{1 / ours:.2f} vs {1 / naive:.2f} images/s" + mfu(ours),
                    "peak_gib": _peak_gib(args.device),
                }
            )
    return rows


if __name__ == "__main__":
    main()
