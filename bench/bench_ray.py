"""Ray executor: score stage on 1 vs 2 CPU actors; Ray's overhead over the local executor on the demo."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, row, table


def _seconds(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Wall seconds of whole stages (actor start and model load included): what a user waits for."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repeat instead of three")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_worker_niceness", "0")  # the local executor runs at normal priority too
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from synthvlm import pipeline
    from synthvlm.config import load_config
    from synthvlm.core.driver import reset_stages, run_stage
    from synthvlm.executors.ray import RayExecutor
    from synthvlm.stages.score import ScoreStage

    repeat = 1 if args.quick else 3
    config = load_config(REPO / "configs" / "demo.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        local_run, ray_run = Path(tmp) / "local", Path(tmp) / "ray"
        t_local = _seconds(lambda: pipeline.run(local_run, config, executor="local", progress=False))
        t_init = _seconds(lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False))
        try:
            t_ray = _seconds(lambda: pipeline.run(ray_run, config, executor="ray", progress=False))

            # One torch thread per actor: 1 actor uses one core, 2 actors use both.
            def score(actors: int) -> float:
                runs = []
                for _ in range(repeat):
                    reset_stages(ray_run, ["score"])
                    ray_config = config.ray.model_copy(update={"actors": actors, "threads": 1})
                    executor = RayExecutor(config=ray_config, progress=False)
                    t0 = time.perf_counter()
                    run_stage(ScoreStage(ray_run, config), executor)
                    runs.append(time.perf_counter() - t0)
                return sorted(runs)[len(runs) // 2]

            t_one, t_two = score(1), score(2)
        finally:
            ray.shutdown()
        images = pipeline.status(local_run)["stages"]["score"]["in"]
        shards = len(list((local_run / "score" / "data").glob("part-*.parquet")))
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        row(
            "score stage on Ray, 2 vs 1 CPU actors (demo, tiny CLIP + SSIM at 768)",
            ours=t_two,
            peer=t_one,
            peer_name="RayExecutor with 1 CPU actor",
            unit="s",
            notes=f"{images} images in {shards} shards, 1 torch thread per actor, median of {repeat}; "
            "actor start and model load included",
        ),
        row(
            "demo pipeline (6 stages), Ray executor vs local",
            ours=t_ray,
            peer=t_local,
            peer_name="LocalExecutor",
            unit="s",
            notes=f"ray.init(num_cpus=2) {t_init:.1f} s not included; one run each",
        ),
    ]


if __name__ == "__main__":
    print(table(main(sys.argv[1:])))
