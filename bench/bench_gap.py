"""Gap metrics at scale: CMMD and PRDC on seeded random embeddings (time, peak RSS) against direct peers.

CMMD's peer is the authors' estimator written directly in numpy (three full Gram matrices, float32, as
google-research/cmmd distance.py does in JAX); PRDC's peer is the `prdc` package (`compute_prdc`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

import numpy as np

from common import in_child, peak_rss, row, table

CMMD_PEER = "direct numpy float32, full Gram matrices (google-research/cmmd distance.py, ported)"
PRDC_PEER = "prdc.compute_prdc (prdc package)"
DIM = 512
GOAL_SECONDS = 30.0


def _unit(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def _direct_cmmd(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    """The authors' formula, unchunked: every n x n matrix materialised, float32 like JAX's default."""
    x_sq = np.diag(x @ x.T)
    y_sq = np.diag(y @ y.T)
    gamma = np.float32(1 / (2 * sigma**2))
    k_xx = np.mean(np.exp(-gamma * (-2 * (x @ x.T) + x_sq[:, None] + x_sq[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * (x @ y.T) + x_sq[:, None] + y_sq[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * (y @ y.T) + y_sq[:, None] + y_sq[None, :])))
    return float(scale * (k_xx + k_yy - 2 * k_xy))


def _child(kind: str, n: int) -> None:
    """Run one side in this fresh process; print seconds, CPU seconds, own peak RSS and the value as JSON."""
    from synthvlm.report import gap

    if kind.startswith("cmmd"):
        x, y = _unit(n, 1), _unit(n, 2)
    else:
        rng = np.random.default_rng(3)
        x = rng.standard_normal((n, DIM), dtype=np.float32)
        y = (rng.standard_normal((n, DIM), dtype=np.float32) * 1.05 + 0.02).astype(np.float32)
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "cmmd_ours":
        value: Any = gap.cmmd(x, y)
    elif kind == "cmmd_peer":
        value = _direct_cmmd(x, y)
    elif kind == "prdc_ours":
        value = gap.prdc(x, y, k=5)
    else:
        import prdc

        with contextlib.redirect_stdout(sys.stderr):  # compute_prdc prints the set sizes
            value = {key: float(v) for key, v in prdc.compute_prdc(x, y, 5).items()}
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss": peak_rss(), "value": value}))


def _measure(kind: str, n: int) -> dict[str, Any]:
    result = in_child(__file__, kind, str(n))
    print(f"[gap] {kind} n={n:,}: {result['seconds']:.1f} s", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """CMMD at equal size vs the direct peer, CMMD at the large size alone, PRDC vs the prdc package."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="CMMD 5K/20K and PRDC 3K instead of 20K/100K, 10K"
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return []
    equal, large, prdc_n = (5_000, 20_000, 3_000) if args.quick else (20_000, 100_000, 10_000)
    ours = _measure("cmmd_ours", equal)
    peer = _measure("cmmd_peer", equal)
    big = _measure("cmmd_ours", large)
    prdc_ours = _measure("prdc_ours", prdc_n)
    prdc_peer = _measure("prdc_peer", prdc_n)
    if prdc_ours["value"] != prdc_peer["value"]:
        raise RuntimeError(f"prdc differs: ours {prdc_ours['value']}, the package {prdc_peer['value']}")
    rel = abs(peer["value"] - ours["value"]) / abs(ours["value"])
    setup = f"{equal:,} x {equal:,} seeded unit vectors, {DIM}-d float32, sigma 10, one run each"
    cpu = f"CPU s ours {ours['cpu']:.0f}, peer {peer['cpu']:.0f}"
    return [
        row(
            f"cmmd, time ({equal // 1000}K x {equal // 1000}K)",
            ours=ours["seconds"],
            peer=peer["seconds"],
            peer_name=CMMD_PEER,
            unit="s",
            notes=f"{setup}; {cpu}; value {ours['value']:.6g}, the float32 peer off by {rel:.1e} relative",
        ),
        row(
            f"cmmd, peak RSS ({equal // 1000}K x {equal // 1000}K)",
            ours=ours["rss"] / 1e9,
            peer=peer["rss"] / 1e9,
            peer_name=CMMD_PEER,
            unit="GB",
            notes="peak RSS (VmHWM) of each side's own process, the two input sets included",
        ),
        row(
            f"cmmd, time ({large // 1000}K x {large // 1000}K)",
            ours=big["seconds"],
            peer=None,
            peer_name="— (the direct peer needs three dense n x n matrices)",
            unit="s",
            notes=f"goal <= {GOAL_SECONDS:g} s; CPU s {big['cpu']:.0f}; peak RSS {big['rss'] / 1e9:.2f} GB; "
            f"value {big['value']:.6g}",
        ),
        row(
            f"prdc, time ({prdc_n // 1000}K x {prdc_n // 1000}K, k 5)",
            ours=prdc_ours["seconds"],
            peer=prdc_peer["seconds"],
            peer_name=PRDC_PEER,
            unit="s",
            notes=f"{DIM}-d float32 Gaussians; identical values {prdc_ours['value']}; CPU s ours "
            f"{prdc_ours['cpu']:.0f}, peer {prdc_peer['cpu']:.0f}",
        ),
        row(
            f"prdc, peak RSS ({prdc_n // 1000}K x {prdc_n // 1000}K, k 5)",
            ours=prdc_ours["rss"] / 1e9,
            peer=prdc_peer["rss"] / 1e9,
            peer_name=PRDC_PEER,
            unit="GB",
            notes="peak RSS (VmHWM) of each side's own process",
        ),
    ]


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result:
        print(table(result))
