"""Generation overhead: synthvlm's generate stage against a bare diffusers loop, for every generator family's
tiny pipeline (the same pipeline class, seeds, batch layout and call arguments on both sides)."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import row, table

PEER = "bare diffusers loop of the family's pipeline class"
PRESETS = (
    "tiny",
    "tiny-sd3",
    "tiny-flux1",
    "tiny-flux2-klein",
    "tiny-sana",
    "tiny-sana-sprint",
    "tiny-pixart-sigma",
    "tiny-qwen-image",
    "tiny-z-image",
)
"""One tiny preset per family (`tiny` is SDXL)."""
SUBJECTS = [
    "a red bicycle",
    "two dogs",
    "a bowl of strawberries",
    "an old lighthouse",
    "a city street",
    "a green parrot",
    "a snowy mountain",
    "a wooden boat",
]
PLACES = [
    "at sunset",
    "in the rain",
    "on a table",
    "near the sea",
    "in a park",
    "at night",
    "indoors",
    "in a field",
]


def _captions(n: int) -> list[str]:
    return [f"{SUBJECTS[i % 8]} {PLACES[(i // 8) % 8]}, view {i}" for i in range(n)]


def _config(inputs: Path, batch: int, preset: str) -> Any:
    from synthvlm.config import RunConfig

    return RunConfig.model_validate(
        {
            "seed": 0,
            "ingest": {"inputs": [str(inputs)]},
            "curate": {"filters": [], "dedup": False},  # every caption reaches generate
            "generate": {
                "preset": preset,
                "candidates_per_caption": 1,
                "batch_size": batch,
                "images_per_shard": 1000,
                "device": "cpu",
            },
        }
    )


def _bare(model_dir: Path, prompts: list[str], ids: list[str], config: Any) -> tuple[float, float]:
    """(load seconds, generate seconds) of a plain diffusers loop with the stage's seeds and batch layout:
    the pipeline class loaded directly, called with the arguments the family builds, PIL output."""
    import diffusers
    import torch

    from synthvlm.core.seeds import derive_seed

    gen = config.generate.pool()[0]  # preset values (steps, guidance, size) filled in, as the stage runs
    family = gen.family
    t0 = time.perf_counter()
    pipe_class = getattr(diffusers, family.pipelines[0])
    pipe = pipe_class.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    t1 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(prompts), gen.batch_size):
            batch = prompts[s : s + gen.batch_size]
            pipe(
                **family.call_arguments(pipe, gen, batch),
                generator=[
                    torch.Generator("cpu").manual_seed(derive_seed(config.seed, c, 0))
                    for c in ids[s : s + gen.batch_size]
                ],
                output_type="pil",
            )
    return t1 - t0, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Seconds per image of the generate stage and of the bare loop, pipeline load included in both."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="16 captions and fewer repeats")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both sides (1: on a shared 2-core box, 2 threads spin-wait)",
    )
    args = parser.parse_args(argv)
    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _measure(args.quick, args.threads)
    finally:
        torch.set_num_threads(threads)


def _measure(quick: bool, threads: int) -> list[dict[str, Any]]:
    from synthvlm.models import registry
    from synthvlm.pipeline import run

    n, batch, repeat = (16, 4, 2) if quick else (64, 4, 3)
    captions = _captions(n)
    ids = [f"cap-{i:04d}" for i in range(n)]
    rows = []
    for preset in PRESETS:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            inputs = tmp / "captions.jsonl"
            inputs.write_text(
                "".join(
                    json.dumps({"id": i, "caption": c}) + "\n" for i, c in zip(ids, captions, strict=True)
                )
            )
            config = _config(inputs, batch, preset)
            run_dir = tmp / "run"
            run(run_dir, config, stages=["ingest", "curate"], progress=False)
            # Build the model before timing: both sides then load the same files from disk.
            gen = config.generate.pool()[0]
            model_dir = Path(registry.location(gen.model, models_dir=run_dir / "models"))
            _bare(model_dir, captions[:batch], ids[:batch], config)  # warm-up: first torch calls are slow

            ours, bare, loads = [], [], []
            for _ in range(repeat):
                registry.clear_cache()  # the stage loads its pipeline as a fresh worker would
                shutil.rmtree(run_dir / "generate", ignore_errors=True)
                t0 = time.perf_counter()
                funnel = run(run_dir, config, stages=["generate"], recompute_from="generate", progress=False)
                ours.append(time.perf_counter() - t0)
                load, generated = _bare(model_dir, captions, ids, config)
                loads.append(load)
                bare.append(load + generated)
            kept = funnel["generate"]["kept"]
            if kept != n:
                raise RuntimeError(f"{preset}: generate kept {kept} of {n} images")
        t_ours, t_bare, t_load = (statistics.median(x) / n for x in (ours, bare, loads))
        rows.append(
            row(
                f"generate stage, {preset} ({gen.family.title}) 64², 2 steps",
                ours=t_ours,
                peer=t_bare,
                peer_name=PEER,
                unit="s/image",
                notes=f"{n} captions x 1 candidate, batch {batch}, {threads} torch thread(s), "
                f"median of {repeat}; pipeline load included in both (bare load {t_load * n:.2f} s); "
                f"overhead {100 * (t_ours / t_bare - 1):+.1f}%",
            )
        )
        print(table(rows[-1:]), file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    print(table(main(sys.argv[1:])))
