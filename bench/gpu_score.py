"""Scoring on a GPU at real model size: CLIPScore and batched SSIM, each against its peer in the same run.

- CLIP: `ClipScorer` (float16 on CUDA, as the score stage runs it) on the published ViT-B/32 architecture
  (bench/configs/clip-vit-base-patch32.json) with random weights, over 1024² images like the generate stage
  writes, versus torchmetrics' `clip_score` on the same model (float32, its default) and device. Both
  start from the same PIL images (torchmetrics from uint8 tensors made of them, inside its timing): image
  preprocessing is part of every image's cost.
- SSIM: the score stage's `paper_ssim_batch` on the worker's CPU threads (the stage computes SSIM there,
  beside the GPU) over the same images, versus scikit-image's `structural_similarity` pair by pair on the
  paper's 768² grayscale pairs, plus the largest difference between the two.

    python bench/gpu_score.py                       # CUDA
    python bench/gpu_score.py --device cpu --tiny   # the same code path at toy size (tests use this)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_clip import _torchmetrics_model  # noqa: E402

CONFIG = Path(__file__).resolve().parent / "configs" / "clip-vit-base-patch32.json"
WORDS = ["cat", "dog", "red", "bus", "the", "photo", "road", "sky", "on", "a", "green", "tree"]


def build_clip(path: Path, *, tiny: bool) -> Path:
    """Random-weight CLIP, published ViT-B/32 architecture (or the tiny test one), with processor files."""
    from synthvlm.models.builtin.clip import build_clip_tokenizer, build_tiny_clip

    if tiny:
        return build_tiny_clip(path)
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    cfg = json.loads(CONFIG.read_text())
    tokenizer_dir = build_clip_tokenizer(path)
    vocab = len(json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8")))
    ids = {"bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1}
    config = CLIPConfig(
        text_config={**cfg["text_config"], **ids},
        vision_config=cfg["vision_config"],
        projection_dim=cfg["projection_dim"],
    )
    CLIPModel(config).eval().save_pretrained(path)
    size = cfg["vision_config"]["image_size"]
    crop = {"height": size, "width": size}
    CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size=crop).save_pretrained(path)
    return path


def _images(n: int, size: int) -> list[Image.Image]:
    """Smooth random colour fields with fine noise: photo-like spectra, deterministic."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (size // 32, size // 32, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
        noisy = np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(noisy))
    return out


def _timed(fn: Any, sync: Any, repeat: int = 3) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the code path on CPU")
    parser.add_argument("--out", type=Path, help="append each JSON row to this file as it is measured")
    args = parser.parse_args(argv)
    import torch
    from skimage.metrics import structural_similarity
    from torchmetrics.functional.multimodal import clip_score as tm_clip_score

    from synthvlm.score.clip import ClipScorer
    from synthvlm.score.ssim import _round_trip, paper_ssim_batch

    cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name() if cuda else args.device

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        row = {"device": device_name, **row, "ratio": row["ours"] / row["peer"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    n = args.images
    size, ssim_size, ssim_low = (64, 48, 21) if args.tiny else (1024, 768, 336)
    images = _images(n, size)
    rng = np.random.default_rng(1)
    captions = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 10)))) for _ in range(n)]

    with tempfile.TemporaryDirectory() as tmp:
        path = build_clip(Path(tmp) / "clip", tiny=args.tiny)
        # As the score stage builds it: preprocessing on the process's torch threads.
        scorer = ClipScorer(str(path), device=args.device, batch_size=64, workers=torch.get_num_threads())
        adapter, processor = _torchmetrics_model(path)
        adapter = adapter.to(args.device)
        texts = [scorer.prefix + c for c in captions]

        def peer() -> None:
            # torchmetrics takes tensors: both sides start from the same PIL images.
            tensors = [torch.from_numpy(np.array(im)).permute(2, 0, 1).to(args.device) for im in images]
            with torch.no_grad():
                for s in range(0, n, 64):
                    tm_clip_score(tensors[s : s + 64], texts[s : s + 64], lambda: (adapter, processor))

        t_ours = _timed(lambda: scorer.cosines(images, captions), sync)
        t_peer = _timed(peer, sync)
    emit(
        {
            "name": f"CLIP cosines, ViT-B/32 architecture{' (tiny)' if args.tiny else ''}, {size}² images",
            "ours": n / t_ours,
            "peer": n / t_peer,
            "peer_name": "torchmetrics clip_score, same model and device, float32",
            "unit": "images/s",
            "notes": f"{n} pairs, batches of 64, preprocessing included (ours on {scorer.workers} threads); "
            "ours float16 on CUDA",
        }
    )

    threads = torch.get_num_threads()
    pairs = [_round_trip(im, ssim_size, ssim_low) for im in images]

    def ours_ssim() -> Any:
        return paper_ssim_batch(images, size=ssim_size, low=ssim_low, workers=threads)

    got = ours_ssim()
    t_ours = _timed(ours_ssim, sync)
    k = min(n, 16)
    reference = np.array([structural_similarity(a, b) for a, b in pairs[:k]])
    t_peer = _timed(lambda: [structural_similarity(a, b) for a, b in pairs[:k]], sync, repeat=1) / k * n
    emit(
        {
            "name": f"SSIM, {n} images to {ssim_size}² grayscale pairs, the score stage's CPU path",
            "ours": n / t_ours,
            "peer": n / t_peer,
            "peer_name": "scikit-image structural_similarity, per pair, one thread",
            "unit": "images/s",
            "notes": f"ours on {threads} threads, resizes included; max abs diff from scikit-image "
            f"{np.abs(got[:k] - reference).max():.1e}",
        }
    )
    return rows


if __name__ == "__main__":
    main()
