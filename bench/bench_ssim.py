"""SSIM, paper recipe: synthvlm's ssim_pair / paper_ssim against scikit-image structural_similarity."""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from common import SHARED_DATA, median_seconds, row, table

PEER = "skimage.metrics.structural_similarity (defaults)"
PEER_PAPER = "skimage.metrics.structural_similarity(a.astype(float64), b.astype(float64), data_range=2)"


def _coco(n: int) -> list[Image.Image]:
    folder = SHARED_DATA / "coco-mini" / "val2017"
    files = sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []
    return [Image.open(f).convert("RGB") for f in files]


def _smooth_noise(n: int, *, size: int = 1024, seed: int = 0) -> list[Image.Image]:
    """Generated-like images: low-resolution noise upsampled bicubically (smooth blobs, no photo texture)."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        for _ in range(n)
    ]


def _rows(label: str, images: list[Image.Image], repeat: int) -> list[dict[str, Any]]:
    import torch
    from skimage.metrics import structural_similarity

    from synthvlm.score.ssim import _round_trip, paper_ssim, paper_ssim_batch, ssim_pair

    pairs = [_round_trip(im, 768, 336) for im in images]
    ours = np.array([ssim_pair(a, b) for a, b in pairs])
    theirs = np.array([structural_similarity(a, b) for a, b in pairs])
    diff = float(np.abs(ours - theirs).max())
    if diff >= 1e-4:
        raise RuntimeError(f"ssim_pair disagrees with skimage by {diff} on {label}")
    t_ours = median_seconds(lambda: [ssim_pair(a, b) for a, b in pairs], repeat=repeat) / len(pairs)
    t_peer = median_seconds(lambda: [structural_similarity(a, b) for a, b in pairs], repeat=repeat)
    t_peer /= len(pairs)

    # The paper's numbers (score.ssim_data_range 2): the same kernel with other constants, against
    # scikit-image on the float64 images, the cast inside the peer's timing as a user would write it.
    def peer_paper() -> list[float]:
        return [
            structural_similarity(a.astype(np.float64), b.astype(np.float64), data_range=2) for a, b in pairs
        ]

    ours_paper = np.array([ssim_pair(a, b, data_range=2) for a, b in pairs])
    paper_diff = float(np.abs(ours_paper - np.array(peer_paper())).max())
    if paper_diff >= 1e-4:
        raise RuntimeError(f"ssim_pair(data_range=2) disagrees with skimage by {paper_diff} on {label}")
    t_ours_paper = median_seconds(lambda: [ssim_pair(a, b, data_range=2) for a, b in pairs], repeat=repeat)
    t_peer_paper = median_seconds(peer_paper, repeat=repeat)

    def peer_end_to_end() -> list[float]:
        return [structural_similarity(*_round_trip(im, 768, 336)) for im in images]

    e2e_diff = float(np.abs(np.array([paper_ssim(im) for im in images]) - np.array(peer_end_to_end())).max())
    t_ours_e2e = median_seconds(lambda: [paper_ssim(im) for im in images], repeat=repeat) / len(images)
    t_peer_e2e = median_seconds(peer_end_to_end, repeat=repeat) / len(images)

    # What the score stage runs: the batch on the worker's threads; the peer gets the same threads.
    threads = torch.get_num_threads()

    def peer_threaded() -> list[float]:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda im: structural_similarity(*_round_trip(im, 768, 336)), images))

    batch_diff = float(np.abs(paper_ssim_batch(images, workers=threads) - np.array(peer_threaded())).max())
    t_ours_batch = median_seconds(lambda: paper_ssim_batch(images, workers=threads), repeat=repeat)
    t_peer_batch = median_seconds(peer_threaded, repeat=repeat)
    scaling = t_ours_e2e * len(images) / t_ours_batch
    size = f"{images[0].width}x{images[0].height}" if len({im.size for im in images}) == 1 else "mixed sizes"
    return [
        row(
            f"ssim_pair, 768² gray pair ({label})",
            ours=1e3 * t_ours,
            peer=1e3 * t_peer,
            peer_name=PEER,
            unit="ms/pair",
            notes=f"{len(pairs)} pairs; max abs diff {diff:.1e}",
        ),
        row(
            f"ssim_pair data_range 2 (the paper's numbers), 768² gray pair ({label})",
            ours=1e3 * t_ours_paper / len(pairs),
            peer=1e3 * t_peer_paper / len(pairs),
            peer_name=PEER_PAPER,
            unit="ms/pair",
            notes=f"{len(pairs)} pairs; max abs diff {paper_diff:.1e}; mean {ours_paper.mean():.4f} "
            f"(data_range 255: {ours.mean():.4f})",
        ),
        row(
            f"paper_ssim end to end ({label})",
            ours=1e3 * t_ours_e2e,
            peer=1e3 * t_peer_e2e,
            peer_name=PEER + " after the same resizes",
            unit="ms/image",
            notes=f"{len(images)} RGB images ({size}); max abs diff {e2e_diff:.1e}",
        ),
        row(
            f"paper_ssim_batch on {threads} threads, as the score stage ({label})",
            ours=1e3 * t_ours_batch / len(images),
            peer=1e3 * t_peer_batch / len(images),
            peer_name=PEER + f" after the same resizes, same {threads} threads",
            unit="ms/image",
            notes=f"{len(images)} RGB images ({size}); {scaling:.2f}x ours on 1 thread; "
            f"max abs diff {batch_diff:.1e}",
        ),
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Time both SSIM paths on real photos and on generated-like images; check they agree to 1e-4."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    args = parser.parse_args(argv)
    n, repeat = (4, 3) if args.quick else (12, 5)
    rows = []
    coco = _coco(n)
    if coco:
        rows += _rows("COCO val2017", coco, repeat)
    else:
        rows.append(
            row(
                "ssim_pair (COCO val2017)",
                ours=float("nan"),
                peer=None,
                peer_name=PEER,
                unit="ms/pair",
                notes=f"skipped: {SHARED_DATA / 'coco-mini'} is absent",
            )
        )
    rows += _rows("smooth noise 1024²", _smooth_noise(n), repeat)
    return rows


if __name__ == "__main__":
    print(table(main(sys.argv[1:])))
