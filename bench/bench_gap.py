"""Gap metrics at scale: CMMD and PRDC on seeded random embeddings (time, peak RSS) against their peers.

Peers, each in its own process in the same run: the previous implementation (`synthvlm.report.gap` as of
commit BEFORE, read with `git show` into a temporary module: chunked, one tile at a time), the authors'
CMMD estimator written directly in numpy (three full Gram matrices, float32, as google-research/cmmd
distance.py does in JAX; only where its n x n matrices fit in memory), and the `prdc` package
(`compute_prdc`; its three dense matrices and their argpartition indices fit at 10K, not at 30K).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, in_child, peak_rss, row, table

BEFORE = "a4bf3b561ce816f3081e898c6b84cd99a1dff23e"
BEFORE_NAME = f"synthvlm.report.gap at {BEFORE[:7]} (one tile at a time, element-wise passes on one core)"
AUTHORS = "direct numpy float32, full Gram matrices (google-research/cmmd distance.py, ported)"
PACKAGE = "prdc.compute_prdc (prdc package)"
DIM = 512
GOAL_SECONDS = 60.0


def _unit(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a


def _gaussians(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    y = (rng.standard_normal((n, DIM), dtype=np.float32) * 1.05 + 0.02).astype(np.float32)
    return x, y


def _authors_cmmd(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    """The authors' formula, unchunked: every n x n matrix materialised, float32 like JAX's default."""
    x_sq = np.diag(x @ x.T)
    y_sq = np.diag(y @ y.T)
    gamma = np.float32(1 / (2 * sigma**2))
    k_xx = np.mean(np.exp(-gamma * (-2 * (x @ x.T) + x_sq[:, None] + x_sq[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * (x @ y.T) + x_sq[:, None] + y_sq[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * (y @ y.T) + y_sq[:, None] + y_sq[None, :])))
    return float(scale * (k_xx + k_yy - 2 * k_xy))


def _before() -> Any:
    """The previous gap module, loaded from git into a temporary file."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{BEFORE}:src/synthvlm/report/gap.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="gap-before-"))
    (folder / "gap_before.py").write_text(source)
    spec = importlib.util.spec_from_file_location("gap_before", folder / "gap_before.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(kind: str, n: int) -> None:
    """Run one side in this fresh process; print seconds, CPU seconds, own peak RSS and the value as JSON."""
    from synthvlm.report import gap

    before = _before() if kind.endswith("_before") else None
    if kind.startswith("cmmd"):
        x, y = _unit(n, 1), _unit(n, 2)
    else:
        x, y = _gaussians(n)
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "cmmd_ours":
        value: Any = gap.cmmd(x, y, device="numpy")
    elif kind == "cmmd_before":
        value = before.cmmd(x, y)
    elif kind == "cmmd_authors":
        value = _authors_cmmd(x, y)
    elif kind == "prdc_ours":
        value = gap.prdc(x, y, k=5, device="numpy")
    elif kind == "prdc_before":
        value = before.prdc(x, y, k=5)
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


def _load() -> str:
    return "load average " + " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """CMMD and PRDC at 30K x 30K against the previous implementation; CMMD against the authors' float32
    estimator and PRDC against the prdc package at the sizes where those fit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5K and 3K instead of 30K, 20K and 10K")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return []
    big, authors_n, package_n = (5_000, 3_000, 3_000) if args.quick else (30_000, 20_000, 10_000)
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    for kind, n in [
        ("cmmd_ours", big),
        ("cmmd_before", big),
        ("cmmd_ours", authors_n),
        ("cmmd_authors", authors_n),
        ("prdc_ours", big),
        ("prdc_before", big),
        ("prdc_ours", package_n),
        ("prdc_package", package_n),
    ]:
        runs[kind, n] = {**_measure(kind, n), "load": _load()}
    if runs["prdc_ours", big]["value"] != runs["prdc_before", big]["value"]:
        raise RuntimeError(f"prdc differs from the previous implementation at {big:,}")
    if runs["prdc_ours", package_n]["value"] != runs["prdc_package", package_n]["value"]:
        raise RuntimeError(f"prdc differs from the prdc package at {package_n:,}")

    def size(n: int) -> str:
        return f"{n // 1000}K x {n // 1000}K"

    def timed(name: str, ours: dict[str, Any], peer: dict[str, Any], peer_name: str, notes: str) -> dict:
        cpu = f"CPU s ours {ours['cpu']:.0f}, peer {peer['cpu']:.0f}"
        rss = f"peak RSS ours {ours['rss'] / 1e9:.2f} GB, peer {peer['rss'] / 1e9:.2f} GB"
        return row(
            name,
            ours=ours["seconds"],
            peer=peer["seconds"],
            peer_name=peer_name,
            unit="s",
            notes=f"{notes}; {cpu}; {rss}; {ours['load']} after ours",
        )

    cmmd_big, cmmd_before = runs["cmmd_ours", big], runs["cmmd_before", big]
    cmmd_mid, cmmd_authors = runs["cmmd_ours", authors_n], runs["cmmd_authors", authors_n]
    unit = f"seeded unit vectors, {DIM}-d float32, sigma 10"
    return [
        timed(
            f"cmmd, time ({size(big)})",
            cmmd_big,
            cmmd_before,
            BEFORE_NAME,
            f"{unit}; goal <= {GOAL_SECONDS:g} s; value {cmmd_big['value']:.9g}, the previous one off by "
            f"{_rel(cmmd_before['value'], cmmd_big['value']):.1e} relative",
        ),
        timed(
            f"cmmd, time ({size(authors_n)})",
            cmmd_mid,
            cmmd_authors,
            AUTHORS,
            f"{unit}; value {cmmd_mid['value']:.9g}, the float32 peer off by "
            f"{_rel(cmmd_authors['value'], cmmd_mid['value']):.1e} relative",
        ),
        timed(
            f"prdc, time ({size(big)}, k 5)",
            runs["prdc_ours", big],
            runs["prdc_before", big],
            BEFORE_NAME,
            f"{DIM}-d float32 Gaussians; goal <= {GOAL_SECONDS:g} s; identical values "
            f"{runs['prdc_ours', big]['value']}",
        ),
        timed(
            f"prdc, time ({size(package_n)}, k 5)",
            runs["prdc_ours", package_n],
            runs["prdc_package", package_n],
            PACKAGE,
            f"{DIM}-d float32 Gaussians; identical values {runs['prdc_ours', package_n]['value']}",
        ),
    ]


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result:
        print(table(result))
