"""Shared benchmark helpers: warmed-up median timings, a machine description, a Markdown table."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
COLUMNS = ("name", "ours", "peer", "peer_name", "unit", "ratio", "notes")


def median_seconds(fn: Callable[[], Any], *, warmup: int = 1, repeat: int = 5) -> float:
    """Median wall time of `fn()` over `repeat` calls after `warmup` untimed ones (caches, lazy loads)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(
    name: str,
    *,
    ours: float,
    peer: float | None,
    peer_name: str,
    unit: str,
    notes: str = "",
    higher_is_better: bool = False,
) -> dict[str, Any]:
    """One result row; ratio is how many times better ours is than the peer (>1: ours wins)."""
    if peer is None or ours == 0 or peer == 0:
        ratio = None
    else:
        ratio = ours / peer if higher_is_better else peer / ours
    return {
        "name": name,
        "ours": ours,
        "peer": peer,
        "peer_name": peer_name,
        "unit": unit,
        "ratio": ratio,
        "notes": notes,
    }


def machine() -> dict[str, str]:
    """CPU model, cores, RAM and library versions, so numbers are read against the box they came from."""
    import torch

    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        ram = f"{kib / 2**20:.1f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (threads: {torch.get_num_threads()})",
        "os": platform.platform(),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as one Markdown table; ratio is printed as N.NNx."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [f"{r['ratio']:.2f}x" if c == "ratio" and r[c] is not None else _fmt(r[c]) for c in COLUMNS]
        lines.append("| " + " | ".join(cells).replace("\n", " ") + " |")
    return "\n".join(lines)


def describe() -> str:
    """The machine description as Markdown bullet lines."""
    return "\n".join(f"- {k}: {v}" for k, v in machine().items()) + f"\n- executable: {sys.executable}"
