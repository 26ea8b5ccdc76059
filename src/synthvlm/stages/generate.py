"""Generate: candidate images per caption, batched, seeded per image, stored as WebDataset tar shards."""

from __future__ import annotations

import tarfile
import time
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from synthvlm.config import GeneratorConfig, RunConfig
from synthvlm.core import fsio, layout, schema
from synthvlm.core.checkpoint import ROWS, TaskParts
from synthvlm.core.needs import Need
from synthvlm.core.progress import report_rows
from synthvlm.core.shards import read_range, row_counts
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.core.webdataset import add_member, encode_samples
from synthvlm.generate import pool


def _part_schema(mixed: bool) -> pa.Schema:
    """A committed batch: its candidate rows with each image's model-seconds (the timing table's column)."""
    return schema.candidate_schema(mixed).append(pa.field("seconds", pa.float64(), nullable=False))


def _generator(stage: GenerateStage, generator: GeneratorConfig) -> Any:
    """One loaded pipeline per worker process: a task of another generator replaces it."""
    import diffusers
    import transformers

    from synthvlm.generate.engine import ImageGenerator
    from synthvlm.models import registry

    # Our own bar reports images/s; the libraries' per-load and per-step bars would interleave with it.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    cfg = stage.config.generate
    key = (
        generator.model_dump_json(),
        cfg.device,
        cfg.max_attempts,
        stage.config.seed,
        str(registry.builtin_dir(stage.models_dir)),
    )
    return registry.cached(
        "generate",
        key,
        lambda: ImageGenerator(
            generator,
            models_dir=stage.models_dir,
            run_seed=stage.config.seed,
            device=cfg.device,
            max_attempts=cfg.max_attempts,
        ),
    )


class GenerateStage(Stage):
    """Item j of the plan is (caption j // N, candidate j % N). Each generator of the pool makes the items
    `generate.pool.assign` gives it; its shards hold S of them each, in plan order, and a shard is one task:
    tasks go generator by generator, so a worker holds one pipeline at a time.

    The batch layout (S and the batch size) is part of the fingerprint, so a resumed run batches exactly
    as the first one did and reproduces its pixels bit for bit.
    """

    name = "generate"
    upstream = ("curate",)
    unit = "images"
    uses_model = True

    @classmethod
    def needs(cls, config: RunConfig) -> list[Need]:
        gen = config.generate
        return [
            need
            for i, generator in enumerate(gen.pool())
            for need in generator.family.needs(
                generator, where="generate" if gen.generators is None else f"generate.generators.{i}"
            )
        ]

    def settings(self) -> dict[str, Any]:
        return {"seed": self.config.seed, **self.config.generate.model_dump()}

    def phases(self) -> list[str]:
        return ["generate"]

    def _captions(self) -> list[fsio.RunPath]:
        return self.upstream_dir("curate").shards()

    def _assignment(self) -> np.ndarray:
        """Generator index of every plan item (all 0 with one generator: no caption id is read)."""
        cfg = self.config.generate
        files = self._captions()
        generators = cfg.pool()
        if len(generators) == 1:
            return np.zeros(sum(row_counts(files)) * cfg.candidates_per_caption, dtype=np.int32)
        ids = [i for f in files for i in fsio.read_table(f, columns=["id"]).column("id").to_pylist()]
        shares = [g.share for g in generators]
        return pool.assign(
            ids, candidates=cfg.candidates_per_caption, shares=shares, run_seed=self.config.seed
        )

    def tasks(self, phase: str) -> list[Task]:
        cfg = self.config.generate
        assignment = self._assignment()
        size = cfg.images_per_shard
        tasks: list[Task] = []
        for g, generator in enumerate(cfg.pool()):
            count = len(pool.items_of(assignment, g))
            for start in range(0, count, size):
                payload = (generator.label, start, min(start + size, count))
                tasks.append(Task(phase, len(tasks), payload, group=generator.label))
        return tasks

    def run_task(self, task: Task) -> TaskStats:
        cfg = self.config.generate
        n = cfg.candidates_per_caption
        label, start, end = task.payload
        generators = cfg.pool()
        index = next(i for i, g in enumerate(generators) if g.label == label)
        generator = generators[index]
        plan_items = pool.items_of(self._assignment(), index)[start:end]
        files = self._captions()
        first, last = int(plan_items[0]) // n, int(plan_items[-1]) // n
        captions = read_range(files, row_counts(files), first, last + 1, columns=["id", "caption"])
        ids, texts = captions.column("id").to_pylist(), captions.column("caption").to_pylist()
        items = [(ids[j // n - first], texts[j // n - first], j % n) for j in plan_items.tolist()]

        import torch

        gen = _generator(self, generator)
        threads = torch.get_num_threads()  # the worker's CPU budget (what Ray gives the actor) encodes
        prov = gen.provenance
        mixed = cfg.mixed
        part_schema = _part_schema(mixed)
        prompts = list(dict.fromkeys(t for _, t, _ in items))
        tokens = dict(zip(prompts, gen.prompt_tokens(prompts), strict=True))
        shard_rel = self.layout.image_shard_ref(task.index)
        parts = TaskParts(self.layout, task.name)
        batch_size = generator.batch_size
        batches = [items[b : b + batch_size] for b in range(0, len(items), batch_size)]
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
                    "steps": generator.steps,
                    "guidance": generator.guidance,
                    "width": generator.width,
                    "height": generator.height,
                    "dtype": prov.dtype,
                    "truncated": truncated,
                    "prompt_tokens": n_tokens,
                    **({"generator": label} if mixed else {}),
                    "seconds": per_image,
                }
                rows.append(row)
                if res.status == "ok":
                    meta = {k_: v for k_, v in row.items() if v is not None and k_ != "seconds"}
                    images.append((key, res.image, meta))
            members = encode_samples(images, fmt=cfg.image_format, quality=cfg.jpeg_quality, workers=threads)
            parts.write_tar(b, members)
            parts.commit(b, pa.Table.from_pylist(rows, schema=part_schema))
            report_rows(len(batch))
        with fsio.atomic_path(self.layout.image_shard(task.index)) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                for name, data in parts.tar_members(len(batches)):
                    add_member(tar, name, data)
        table = parts.table(ROWS, len(batches), part_schema)
        candidates = table.drop_columns(["seconds"]).cast(schema.candidate_schema(mixed))
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


def by_generator(run_dir: fsio.RunPath, config: RunConfig) -> dict[str, dict[str, Any]]:
    """Per generator: candidates, images made and failed, images scored and selected, the share of the
    selection, and model-seconds in all and per selected image (None while none is selected)."""
    labels = [g.label for g in config.generate.pool()]
    out = {
        label: {"candidates": 0, "images": 0, "failed": 0, "scored": 0, "selected": 0, "model_seconds": 0.0}
        for label in labels
    }
    columns = ["key", "status", *(["generator"] if config.generate.mixed else [])]
    made: dict[str, str] = {}
    generate = layout.StageDir(run_dir, "generate")
    for path in generate.shards():
        table = fsio.read_table(path, columns=columns)
        names = schema.generator_column(table, labels[0]).to_pylist()
        keys, statuses = table.column("key").to_pylist(), table.column("status").to_pylist()
        for key, status, name in zip(keys, statuses, names, strict=True):
            made[key] = name
            out[name]["candidates"] += 1
            out[name]["images" if status == "ok" else "failed"] += 1
    for path in generate.timings():
        timing = fsio.read_table(path)
        for key, seconds in zip(
            timing.column("key").to_pylist(), timing.column("seconds").to_pylist(), strict=True
        ):
            out[made[key]]["model_seconds"] += seconds
    for stage, field in (("score", "scored"), ("select", "selected")):
        for path in layout.StageDir(run_dir, stage).shards():
            for key in fsio.read_table(path, columns=["key"]).column("key").to_pylist():
                out[made[key]][field] += 1
    selected = sum(g["selected"] for g in out.values())
    for g in out.values():
        g["selection_share"] = g["selected"] / selected if selected else None
        g["seconds_per_selected"] = g["model_seconds"] / g["selected"] if g["selected"] else None
    return out
