"""Vendi score at scale: `diversity.vendi_score` (the d x d Gram matrix) on seeded float16 embeddings.

Peers, each side in its own process in the same run: the definition on the n x n kernel (numpy: unit rows
in float64, K = X X^T, eigvalsh(K / n)) at the largest n it does in seconds, and the authors' package
(`vendi-score`, `vendi.score_X`, the same n x n route through scikit-learn and scipy) at a small n. The
package is not a dependency: pass the Python of an environment that has it with --vendi-python (or run
this with one), else its row is left out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np

from common import in_child, peak_rss, row, table

DIM = 512
GOAL_SECONDS = 60.0
KERNEL = "the n x n definition in numpy (K = X X^T on unit float64 rows, eigvalsh of K / n)"
PACKAGE = "vendi-score 0.0.3, vendi.score_X (the authors' package: n x n kernel, scipy eigvalsh)"


def _embeddings(n: int) -> np.ndarray:
    """n x 512 float16 rows, CLIP-like (a shared direction plus noise), built in blocks to bound memory."""
    rng = np.random.default_rng(0)
    mean = rng.standard_normal(DIM, dtype=np.float32)
    out = np.empty((n, DIM), dtype=np.float16)
    for start in range(0, n, 65_536):
        stop = min(n, start + 65_536)
        block = rng.standard_normal((stop - start, DIM), dtype=np.float32) * 2.0 + mean
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _kernel_score(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(x @ x.T / len(x))
    p = eigenvalues[eigenvalues > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def _child(kind: str, n: int) -> None:
    """One side in this fresh process: seconds, CPU seconds, own peak RSS and the value, as JSON."""
    x = _embeddings(n)
    if kind == "ours":
        from synthvlm.report.diversity import vendi_score as score
    elif kind == "kernel":
        score = _kernel_score
    else:
        import warnings

        from vendi_score import vendi

        warnings.simplefilter("ignore", DeprecationWarning)  # 0.0.3 reaches a deprecated scipy.sparse name

        def score(x: np.ndarray) -> float:
            return float(vendi.score_X(x.astype(np.float64)))

    score(x[:1024])  # untimed: the first LAPACK call of a process sets up its buffers (~1 s here)
    runs = []
    # Runs under 2 s are repeated (median of 5): one stall of the shared machine is longer than they are.
    while len(runs) < (1 if runs and runs[0][0] >= 2.0 else 5):
        t0, c0 = time.perf_counter(), time.process_time()
        value = score(x)
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    seconds, cpu = sorted(runs)[len(runs) // 2]
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss": peak_rss(), "value": value, "runs": len(runs)}))


def _measure(kind: str, n: int, python: str | None = None, processes: int = 1) -> dict[str, Any]:
    """The fastest of `processes` fresh processes: on this shared machine OpenBLAS's threads stalled for
    seconds in some processes and not in others (a whole process at a time)."""
    results = []
    for _ in range(processes):
        if python is None:
            results.append(in_child(__file__, kind, str(n)))
        else:
            out = subprocess.run(
                [python, __file__, "--child", kind, str(n)], check=True, capture_output=True, text=True
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = {**min(results, key=lambda r: r["seconds"]), "processes": processes}
    seconds = ", ".join(f"{r['seconds']:.2f}" for r in results)
    print(f"[vendi] {kind} n={n:,}: {seconds} s", file=sys.stderr, flush=True)
    return result


def _package_python(given: str | None) -> str | None:
    """The Python that has vendi-score: --vendi-python, else this one if it imports it, else None."""
    if given is not None:
        return given
    import importlib.util

    return sys.executable if importlib.util.find_spec("vendi_score") is not None else None


def _runs(ours: dict[str, Any], peer: dict[str, Any]) -> str:
    return (
        f"each side the fastest of {ours['processes']} processes, each the median of {ours['runs']} "
        f"(ours) and {peer['runs']} (peer) runs"
    )


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """1M x 512 alone (no peer holds a 1M x 1M kernel), the n x n definition at 5K, the package at 2K."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100K, 2K and 1K instead of 1M, 5K and 2K")
    parser.add_argument("--vendi-python", help="a Python with vendi-score installed (python3.11 venv)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return []
    big, kernel_n, package_n = (100_000, 2_000, 1_000) if args.quick else (1_000_000, 5_000, 2_000)
    ours_big = _measure("ours", big)
    ours_kernel, kernel = _measure("ours", kernel_n, processes=3), _measure("kernel", kernel_n, processes=3)
    setup = f"{DIM}-d float16, seeded CLIP-like rows"
    rows = [
        row(
            f"vendi, time ({big // 1000:,}K x {DIM})",
            ours=ours_big["seconds"],
            peer=None,
            peer_name="— (an n x n kernel of 1M rows is 8 TB)",
            unit="s",
            notes=f"{setup}; goal < {GOAL_SECONDS:g} s; CPU s {ours_big['cpu']:.0f}; peak RSS "
            f"{ours_big['rss'] / 1e9:.2f} GB (the input is {big * DIM * 2 / 1e9:.2f} GB); "
            f"score {ours_big['value']:.6f}",
        ),
        row(
            f"vendi, time ({kernel_n // 1000}K x {DIM})",
            ours=ours_kernel["seconds"],
            peer=kernel["seconds"],
            peer_name=KERNEL,
            unit="s",
            notes=f"{setup}; {_runs(ours_kernel, kernel)}; score {ours_kernel['value']:.9f}, the n x n route "
            f"off by {_rel(kernel['value'], ours_kernel['value']):.1e} relative; peak RSS ours "
            f"{ours_kernel['rss'] / 1e9:.2f} GB, peer {kernel['rss'] / 1e9:.2f} GB",
        ),
    ]
    python = _package_python(args.vendi_python)
    if python is None:
        print("[vendi] vendi-score not found: its row is left out (--vendi-python)", file=sys.stderr)
        return rows
    ours_small = _measure("ours", package_n, processes=3)
    package = _measure("package", package_n, python, processes=3)
    rows.append(
        row(
            f"vendi, time ({package_n // 1000}K x {DIM})",
            ours=ours_small["seconds"],
            peer=package["seconds"],
            peer_name=PACKAGE,
            unit="s",
            notes=f"{setup}; {_runs(ours_small, package)}; score {ours_small['value']:.9f}, the package "
            f"off by {_rel(package['value'], ours_small['value']):.1e} relative",
        )
    )
    return rows


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result:
        print(table(result))
