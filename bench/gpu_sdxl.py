"""SDXL at real size on a GPU: a naive diffusers batch-1 loop versus synthvlm's generate stage.

Builds the published SDXL base architecture (bench/configs/sdxl-base-1.0.json) with random weights —
FLOPs and memory do not depend on weight values — saves it once as safetensors, then measures, in the
same process and on the same device:

- naive: `StableDiffusionXLPipeline.from_pretrained(...)`, one prompt per call, default settings;
- ours: the generate stage of a synthvlm run (batched, per-image seeds, JPEG + tar + metadata written).

Pipeline loading is excluded from both (each is warmed up on one batch first). Prints s/image,
images/s, the ratio, and model FLOP utilisation against the chip's dense bf16/fp16 peak.

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
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
"""Dense bf16/fp16 tensor-core peaks (TFLOP/s) by name fragment of torch.cuda.get_device_name()."""


def build_sdxl(path: Path, *, tiny: bool, dtype: Any) -> Path:
    """Random-weight SDXL base (published config, or the tiny test config) saved as a local pipeline."""
    if tiny:
        from synthvlm.models.tiny_sdxl import build_tiny_sdxl

        return build_tiny_sdxl(path)
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from synthvlm.models.tiny import build_clip_tokenizer

    cfg = json.loads(CONFIGS.read_text())
    torch.manual_seed(0)
    tok_dir = build_clip_tokenizer(path.parent / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
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


def naive_loop(
    model_dir: Path, prompts: list[str], *, steps: int, size: int, device: str, dtype: Any
) -> float:
    """Seconds per image of one-prompt-per-call diffusers, after a warm-up call."""
    import torch
    from diffusers import StableDiffusionXLPipeline

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
    compile: bool,
    work: Path,
) -> float:
    """Seconds per image of the generate stage (tar, JPEG, metadata included), model load excluded."""
    from synthvlm import pipeline
    from synthvlm.config import RunConfig
    from synthvlm.executors import LocalExecutor
    from synthvlm.stage import run_stage
    from synthvlm.stages.generate import GenerateStage, _generator

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
            },
        }
    )
    run = work / "run"
    pipeline.run(run, config, stages=["ingest", "curate"], progress=False)
    stage = GenerateStage(run, config)
    gen = _generator(stage)
    gen.generate(
        prompts[:batch_size], caption_ids=["warm"] * batch_size, candidate_indices=list(range(batch_size))
    )
    _sync(device)
    t0 = time.perf_counter()
    run_stage(stage, LocalExecutor(progress=False))
    _sync(device)
    return (time.perf_counter() - t0) / len(prompts)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="toy-size models: checks the code path on CPU")
    args = parser.parse_args(argv)
    import torch

    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    prompts = [f"a photo of object number {i} on a wooden table" for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = build_sdxl(work / "sdxl", tiny=args.tiny, dtype=dtype)
        naive = naive_loop(
            model_dir, prompts, steps=args.steps, size=args.size, device=args.device, dtype=dtype
        )
        ours = our_stage(
            model_dir,
            prompts,
            steps=args.steps,
            size=args.size,
            device=args.device,
            batch_size=args.batch_size,
            compile=args.compile,
            work=work,
        )
    peak = peak_flops(args.device)
    flops = flops_per_image(args.steps, args.size)
    rows = [
        {
            "name": f"SDXL {args.size}², {args.steps} steps, batch {args.batch_size}"
            + (" (tiny)" if args.tiny else ""),
            "ours": ours,
            "peer": naive,
            "peer_name": "diffusers batch-1 loop",
            "unit": "s/image",
            "ratio": naive / ours,
            "notes": f"{1 / ours:.2f} vs {1 / naive:.2f} images/s"
            + (
                f"; MFU ours {flops / ours / peak:.1%}, naive {flops / naive / peak:.1%}"
                if peak and not args.tiny
                else ""
            ),
        }
    ]
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
