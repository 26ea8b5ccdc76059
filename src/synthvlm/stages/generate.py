"""Generate: candidate images per caption, batched, seeded per image, stored as WebDataset tar shards."""

from __future__ import annotations

import tarfile
import time
from typing import Any

import pyarrow as pa
from PIL import Image

from synthvlm.core import fsio, schema
from synthvlm.core.checkpoint import ROWS, TaskParts
from synthvlm.core.progress import report_rows
from synthvlm.core.shards import read_range, row_counts
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.core.webdataset import add_member, encode_samples

_PART = pa.schema([*schema.CANDIDATE, pa.field("seconds", pa.float64(), nullable=False)])
"""A committed batch: its candidate rows with each image's model-seconds (the timing table's column)."""


def _generator(stage: GenerateStage) -> Any:
    """One loaded pipeline per worker process and config."""
    import diffusers
    import transformers

    from synthvlm.generate.engine import ImageGenerator
    from synthvlm.models import registry

    # Our own bar reports images/s; the libraries' per-load and per-step bars would interleave with it.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    cfg = stage.config.generate
    key = (cfg.model_dump_json(), stage.config.seed, str(registry.builtin_dir(stage.models_dir)))
    return registry.cached(
        "generate",
        key,
        lambda: ImageGenerator(cfg, models_dir=stage.models_dir, run_seed=stage.config.seed),
    )


class GenerateStage(Stage):
    """Item j of the plan is (caption j // N, candidate j % N); shard k holds items [k*S, (k+1)*S).

    The batch layout (S and the batch size) is part of the fingerprint, so a resumed run batches exactly
    as the first one did and reproduces its pixels bit for bit.
    """

    name = "generate"
    upstream = ("curate",)
    unit = "images"
    uses_model = True

    def settings(self) -> dict[str, Any]:
        return {"seed": self.config.seed, **self.config.generate.model_dump()}

    def phases(self) -> list[str]:
        return ["generate"]

    def _captions(self) -> list[fsio.RunPath]:
        return self.upstream_dir("curate").shards()

    def tasks(self, phase: str) -> list[Task]:
        cfg = self.config.generate
        items = sum(row_counts(self._captions())) * cfg.candidates_per_caption
        size = cfg.images_per_shard
        return [
            Task(phase, k, (start, min(start + size, items))) for k, start in enumerate(range(0, items, size))
        ]

    def run_task(self, task: Task) -> TaskStats:
        cfg = self.config.generate
        n = cfg.candidates_per_caption
        start, end = task.payload
        files = self._captions()
        first = start // n
        captions = read_range(files, row_counts(files), first, (end - 1) // n + 1, columns=["id", "caption"])
        ids, texts = captions.column("id").to_pylist(), captions.column("caption").to_pylist()
        items = [(ids[j // n - first], texts[j // n - first], j % n) for j in range(start, end)]

        import torch

        gen = _generator(self)
        threads = torch.get_num_threads()  # the worker's CPU budget (what Ray gives the actor) encodes
        prov = gen.provenance
        tokens = dict(zip(texts, gen.prompt_tokens(texts), strict=True))
        shard_rel = self.layout.image_shard_ref(task.index)
        parts = TaskParts(self.layout, task.name)
        batches = [items[b : b + cfg.batch_size] for b in range(0, len(items), cfg.batch_size)]
        resumed = parts.committed()
        for b, batch in enumerate(batches):
            if b < resumed:  # committed by an earlier, interrupted run of this task
                report_rows(len(batch))
                continue
            t0 = time.perf_counter()
            results = gen.generate(
                [t for _, t, _ in batch],
                caption_ids=[c for c, _, _ in batch],
                candidate_indices=[k for *_, k in batch],
            )
            per_image = (time.perf_counter() - t0) / len(batch)
            rows: list[dict[str, Any]] = []
            images: list[tuple[str, Image.Image, dict[str, Any]]] = []
            for (cid, text, k), res in zip(batch, results, strict=True):
                key = f"{cid}-{k}"
                n_tokens, truncated = tokens[text]
                row = {
                    "key": key,
                    "caption_id": cid,
                    "candidate_index": k,
                    "caption": text,
                    "seed": res.seed,
                    "attempts": res.attempts,
                    "status": res.status,
                    "reason": res.reason,
                    "image_shard": shard_rel if res.status == "ok" else None,
                    "image_name": f"{key}.{cfg.image_format}" if res.status == "ok" else None,
                    "model_id": prov.model_id,
                    "model_revision": prov.model_revision,
                    "refiner_id": prov.refiner_id,
                    "refiner_revision": prov.refiner_revision,
                    "scheduler": prov.scheduler,
                    "steps": cfg.steps,
                    "guidance": cfg.guidance,
                    "width": cfg.width,
                    "height": cfg.height,
                    "dtype": prov.dtype,
                    "truncated": truncated,
                    "prompt_tokens": n_tokens,
                    "seconds": per_image,
                }
                rows.append(row)
                if res.status == "ok":
                    meta = {k_: v for k_, v in row.items() if v is not None and k_ != "seconds"}
                    images.append((key, res.image, meta))
            members = encode_samples(images, fmt=cfg.image_format, quality=cfg.jpeg_quality, workers=threads)
            parts.write_tar(b, members)
            parts.commit(b, pa.Table.from_pylist(rows, schema=_PART))
            report_rows(len(batch))
        with fsio.atomic_path(self.layout.image_shard(task.index)) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                for name, data in parts.tar_members(len(batches)):
                    add_member(tar, name, data)
        table = parts.table(ROWS, len(batches), _PART)
        candidates = table.drop_columns(["seconds"]).cast(schema.CANDIDATE)
        fsio.write_table(self.layout.shard(task.index), candidates)
        timing = table.select(["key", "seconds"]).cast(schema.TIMING)
        fsio.write_table(self.layout.timing(task.index), timing)
        columns = ["key", "caption", "candidate_index", "truncated", "attempts", "status", "reason"]
        rows = table.select(columns).to_pylist()
        failed = [r for r in rows if r["status"] != "ok"]
        self.write_rejected(
            task,
            [
                {"id": r["key"], "caption": r["caption"], "reason": "failed_image", "detail": r["reason"]}
                for r in failed
            ],
        )
        extra = {
            "truncated_captions": sum(1 for r in rows if r["truncated"] and r["candidate_index"] == 0),
            "model_seconds": sum(timing.column("seconds").to_pylist()),
            "regenerated": sum(r["attempts"] - 1 for r in rows),
        }
        return TaskStats(
            len(rows), len(rows) - len(failed), {"failed_image": len(failed)} if failed else {}, extra
        )
