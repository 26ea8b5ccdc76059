"""Run every benchmark and print one Markdown table plus the machine it ran on (`make bench`)."""

from __future__ import annotations

import argparse
import sys
import time

import bench_balanced
import bench_clip
import bench_gap
import bench_generate
import bench_ray
import bench_scorers
import bench_select
import bench_ssim
import bench_vendi
import curate_vs_datajuicer
from common import describe, table

BENCHES = {
    "ssim": bench_ssim,
    "clip": bench_clip,
    "scorers": bench_scorers,
    "generate": bench_generate,
    "select": bench_select,
    "balanced": bench_balanced,
    "gap": bench_gap,
    "vendi": bench_vendi,
    "ray": bench_ray,
    "curate": curate_vs_datajuicer,  # builds, checks Data-Juicer's venv (bench/datajuicer-requirements.txt)
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks in order; --quick is passed through to each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats everywhere")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these benchmarks")
    args = parser.parse_args(argv)
    rows = []
    t0 = time.perf_counter()
    if not args.only or "curate" in args.only:
        # Build (if needed) and check Data-Juicer's venv before minutes of other benchmarks, not after.
        try:
            curate_vs_datajuicer.prepare()
        except curate_vs_datajuicer.VenvError as error:
            print(f"[curate] {error}", file=sys.stderr)
            return 1
    for name, module in BENCHES.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        rows += module.main(["--quick"] if args.quick else [])
        print(f"[{name}] done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print("## Machine\n")
    print(describe())
    print(f"\n## Results ({'--quick' if args.quick else 'full'}; {time.perf_counter() - t0:.0f} s in all)\n")
    print(table(rows))
    print("\nratio: how many times better ours is than the peer (time: peer/ours; throughput: ours/peer).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
