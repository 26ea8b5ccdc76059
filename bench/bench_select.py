"""Selection at scale: SelectStage over millions of score rows (time, peak RSS) against a pyarrow group_by."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import in_child, peak_rss, row, table

PEER = "pyarrow Table.group_by(caption_id).aggregate(max) + sort + top-K"
GOAL_SECONDS, GOAL_GB = 10.0, 2.0
CANDIDATES = 3
TOP_K = 100_000


def _fixed_strings(prefix: str, numbers: np.ndarray, digits: int, suffix: np.ndarray | None = None) -> Any:
    """Strings prefix + zero-padded number (+ "-" + a suffix digit), built from buffers: fast at 10M rows."""
    import pyarrow as pa

    n = len(numbers)
    width = len(prefix) + digits + (2 if suffix is not None else 0)
    chars = np.empty((n, width), dtype=np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    value = numbers.astype(np.int64).copy()
    for d in range(digits - 1, -1, -1):
        chars[:, len(prefix) + d] = ord("0") + value % 10
        value //= 10
    if suffix is not None:
        chars[:, -2] = ord("-")
        chars[:, -1] = ord("0") + suffix
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


def _write_shards(run_dir: Path, rows: int, shards: int) -> None:
    """Score shards in the SCORE schema: `rows` candidates, CANDIDATES per caption, random scores."""
    import pyarrow as pa

    from synthvlm.core import fsio, schema

    rng = np.random.default_rng(0)
    per = rows // shards
    for s in range(shards):
        item = np.arange(s * per, (s + 1) * per)
        caption = item // CANDIDATES
        cand = (item % CANDIDATES).astype(np.int32)
        clip = rng.random(per) * 0.4
        ssim = rng.random(per)
        shard = f"generate/images/part-{s:05d}.tar"
        table = pa.table(
            {
                "key": _fixed_strings("c", caption, 9, cand),
                "caption_id": _fixed_strings("c", caption, 9),
                "candidate_index": pa.array(cand),
                "caption": _fixed_strings("a photo of thing ", caption, 9),
                "image_shard": pa.array(np.full(per, shard, dtype=object), pa.string()),
                "image_name": _fixed_strings("c", caption, 9, cand),
                "clip": clip,
                "ssim": ssim,
                "weighted": clip + 0.5 * ssim,
            },
            schema=schema.SCORE,
        )
        fsio.write_table(run_dir / "score" / "data" / f"part-{s:05d}.parquet", table)


def _child(kind: str, run_dir: str) -> None:
    """Run one side in this fresh process; print its seconds and own peak RSS as JSON."""
    from synthvlm.config import RunConfig
    from synthvlm.core.stage import Task
    from synthvlm.stages.select import SelectStage

    t0 = time.perf_counter()
    if kind == "ours":
        stage = SelectStage(Path(run_dir), RunConfig().updated("select", top_k=TOP_K))
        stats = stage.run_task(Task("select", 0))
        kept = stats.kept
    else:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        files = sorted((Path(run_dir) / "score" / "data").glob("part-*.parquet"))
        light = pa.concat_tables([pq.read_table(f, columns=["caption_id", "weighted"]) for f in files])
        best = light.group_by("caption_id").aggregate([("weighted", "max")])
        order = pc.sort_indices(best, sort_keys=[("weighted_max", "descending"), ("caption_id", "ascending")])
        kept = best.take(order[:TOP_K]).num_rows
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "rss": peak_rss(), "kept": kept}))


def _measure(kind: str, run_dir: Path) -> dict[str, Any]:
    return in_child(__file__, kind, str(run_dir))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Seconds and peak RSS of select over synthetic score shards, each side in its own subprocess."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M rows instead of 10M")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "RUN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return []
    rows, shards = (999_999, 3) if args.quick else (9_999_999, 9)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        t0 = time.perf_counter()
        _write_shards(run_dir, rows, shards)
        write_s = time.perf_counter() - t0
        ours = _measure("ours", run_dir)
        peer = _measure("peer", run_dir)
    if ours["kept"] != peer["kept"]:
        raise RuntimeError(f"select kept {ours['kept']} rows, the peer {peer['kept']}")
    setup = f"{rows:,} rows in {shards} shards, {CANDIDATES} candidates/caption, top_k {TOP_K:,}"
    return [
        row(
            f"select, time ({rows / 1e6:.0f}M rows)",
            ours=ours["seconds"],
            peer=peer["seconds"],
            peer_name=PEER,
            unit="s",
            notes=f"{setup}; goal <= {GOAL_SECONDS:g} s; ours also gathers full rows, ranks ties "
            f"and writes selection + rejected (shards written in {write_s:.0f} s, untimed)",
        ),
        row(
            f"select, peak RSS ({rows / 1e6:.0f}M rows)",
            ours=ours["rss"] / 1e9,
            peer=peer["rss"] / 1e9,
            peer_name=PEER,
            unit="GB",
            notes=f"peak RSS (VmHWM) of each side's own process; goal <= {GOAL_GB:g} GB",
        ),
    ]


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result:
        print(table(result))
