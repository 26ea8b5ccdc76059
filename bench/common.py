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


def peak_rss() -> int:
    """This process's peak resident set in bytes: VmHWM, not ru_maxrss, since Linux carries ru_maxrss
    over from the forking parent across exec."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:", 1)[1].split()[0]) * 1024


def in_child(script: str, *args: str) -> dict[str, Any]:
    """Run `python SCRIPT --child ARGS` (one side of a benchmark in a fresh process, so each side's peak
    memory is its own) and return the JSON object its last stdout line holds."""
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, script, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


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


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    path = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().split("\n\n", 1)[0].splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _caches() -> str:
    """cpu0's data and unified caches from sysfs, e.g. 'L1d 48K, L2 2048K, L3 307200K (shared by 0-1)'."""
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        kind = (index / "type").read_text().strip()
        if kind == "Instruction":
            continue
        level, size = (index / "level").read_text().strip(), (index / "size").read_text().strip()
        shared = (index / "shared_cpu_list").read_text().strip()
        caches.append(
            f"L{level}{'d' if kind == 'Data' else ''} {size}"
            + (f" (shared by {shared})" if "-" in shared or "," in shared else "")
        )
    return ", ".join(caches) or "unknown"


def cpu_model() -> str:
    """The CPU as precisely as the machine tells it: model name, family/model/stepping, caches, widest SIMD.

    Virtual machines often report a generic model name ("Intel(R) Xeon(R) Processor"); the model number
    and cache sizes still tell CPU generations apart, so ratios from different machines are never read as
    if they came from one.
    """
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or "unknown"
    flags = set(info.get("flags", "").split())
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    ids = ", ".join(f"{k} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info)
    return f"{name} ({ids}; {_caches()}; {simd})" if ids else f"{name} ({_caches()}; {simd})"


def machine() -> dict[str, str]:
    """CPU model, cores, RAM and library versions, so numbers are read against the box they came from."""
    import numpy
    import torch

    ram = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        ram = f"{kib / 2**20:.1f} GiB"
    simd = numpy.show_config(mode="dicts").get("SIMD Extensions", {}).get("found", [])
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "ram": ram,
        "python": platform.python_version(),
        "numpy": f"{numpy.__version__} (SIMD: {' '.join(simd) or 'baseline only'})",
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
