"""A small finished run for report tests: hand-made generate outputs, then the real score and select stages.

Generation is replaced by fixed images (generating is not what these tests are about and is slow on CPU);
everything from scoring on is the pipeline's own code, so the report reads exactly what a run writes.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageFilter

from synthvlm import pipeline
from synthvlm.config import RunConfig
from synthvlm.core import fsio, layout, schema
from synthvlm.core.webdataset import add_member, encode

HOSTILE = "<script>alert(1)</script>"
CAPTIONS = 10
CANDIDATES = 2
TOP_K = 4
SECONDS = 0.5
FAILED_KEY = "c09-1"  # one candidate whose generation failed: 20 candidates, 19 images
LONG_ID = "c05" + "0123456789abcdef" * 4  # no break opportunity: must still wrap inside its image card
REPETITIVE = " ".join(["buy now"] * 12)  # word_repetition_filter 1.0 and character_repetition_filter 0.2558
SYMBOLS = "!!! ??? ### $$$ %%% &&& a cat"  # alphanumeric_filter 0.1379, special_characters_filter 0.8621


def _fake_stage(run: Path, name: str, phase: str, stats: dict[str, Any]) -> None:
    """Completion records of a stage that ran as one task, as `run_stage` leaves them."""
    folder = layout.StageDir(run, name)
    fsio.write_json(folder.phases, [phase])
    fsio.write_json(folder.plan(phase), {"tasks": 1})
    fsio.write_json(folder.done(layout.task_name(phase, 0)), {"extra": {}, **stats})
    funnel = {
        "in": stats["in"],
        "kept": stats["kept"],
        "dropped": stats["dropped"],
        "extra": stats.get("extra", {}),
        "tasks_done": 1,
        "tasks_total": 1,
        "complete": True,
    }
    fsio.write_json(folder.complete, funnel)


def image(index: int) -> Image.Image:
    """A fixed 64x64 image; the blur varies so SSIM varies."""
    rng = np.random.default_rng(index)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(index % 4))


def caption(i: int) -> str:
    return HOSTILE if i == 3 else f"a photo of thing number {i} on a table"


def caption_id(i: int) -> str:
    return LONG_ID if i == 5 else f"c{i:02d}"


def ingested() -> list[str]:
    """Ingest's captions: the 10 that curate keeps, then the two that the paper's filters drop."""
    return [caption(i) for i in range(CAPTIONS)] + [REPETITIVE, SYMBOLS]


def make_ingested_run(run: Path) -> RunConfig:
    """A run whose ingest is complete (12 captions) and nothing else has run; returns its config."""
    config = RunConfig.model_validate(
        {
            "seed": 0,
            "generate": {"preset": "tiny", "candidates_per_caption": CANDIDATES, "device": "cpu"},
            "score": {
                "clip_model": "builtin:tiny-clip",
                "batch_size": 8,
                "device": "cpu",
                "ssim_size": 128,
                "ssim_low": 56,
            },
            "select": {"top_k": TOP_K},
        }
    )
    pipeline.save_run_config(run, config)
    pool = ingested()
    ingest_rows = [
        {
            "id": caption_id(i) if i < CAPTIONS else f"c{i:02d}",
            "caption": text,
            "source_file": "captions.jsonl",
            "source_index": i + 1,
            "source_id": None,
            "image_ref": None,
        }
        for i, text in enumerate(pool)
    ]
    fsio.write_table(
        layout.StageDir(run, "ingest").shard(0), pa.Table.from_pylist(ingest_rows, schema=schema.CAPTION)
    )
    n_pool = len(pool)
    _fake_stage(run, "ingest", "read", {"in": n_pool + 2, "kept": n_pool, "dropped": {"bad_json": 2}})
    return config


def make_run(run: Path) -> Path:
    """A finished run (ingest .. select) with 10 captions x 2 candidates, one failed image, top_k 4."""
    config = make_ingested_run(run)
    n_pool = len(ingested())
    _fake_stage(
        run,
        "curate",
        "filter",
        {
            "in": n_pool,
            "kept": CAPTIONS,
            "dropped": {"alphanumeric_filter": 1, "character_repetition_filter": 1},
        },
    )
    rows, timing = [], []
    generate = layout.StageDir(run, "generate")
    shard = generate.image_shard_ref(0)
    generate.image_shard(0).parent.mkdir(parents=True)
    with tarfile.open(generate.image_shard(0), "w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(CAPTIONS):
            for k in range(CANDIDATES):
                key = f"{caption_id(i)}-{k}"
                ok = key != FAILED_KEY
                rows.append(
                    {
                        "key": key,
                        "caption_id": caption_id(i),
                        "candidate_index": k,
                        "caption": caption(i),
                        "seed": 1000 + 2 * i + k,
                        "attempts": 1 if ok else 3,
                        "status": "ok" if ok else "failed",
                        "reason": None if ok else "constant image",
                        "image_shard": shard if ok else None,
                        "image_name": f"{key}.jpg" if ok else None,
                        "model_id": "builtin:tiny-sdxl",
                        "model_revision": "rev-abc",
                        "refiner_id": None,
                        "refiner_revision": None,
                        "scheduler": "EulerDiscreteScheduler",
                        "steps": 2,
                        "guidance": 5.0,
                        "width": 64,
                        "height": 64,
                        "dtype": "float32",
                        "truncated": False,
                        "prompt_tokens": 9,
                    }
                )
                timing.append({"key": key, "seconds": SECONDS})
                if ok:
                    add_member(tar, f"{key}.jpg", encode(image(2 * i + k), fmt="jpg", quality=95))
    fsio.write_table(generate.shard(0), pa.Table.from_pylist(rows, schema=schema.CANDIDATE))
    fsio.write_table(generate.timing(0), pa.Table.from_pylist(timing, schema=schema.TIMING))
    n = CAPTIONS * CANDIDATES
    _fake_stage(
        run,
        "generate",
        "generate",
        {"in": n, "kept": n - 1, "dropped": {"failed_image": 1}, "extra": {"model_seconds": n * SECONDS}},
    )
    pipeline.run(run, config, stages=["score", "select"], progress=False)
    return run
