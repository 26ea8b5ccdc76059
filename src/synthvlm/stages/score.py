"""Score: CLIPScore (max(cosine, 0)) + lambda * SSIM of every good candidate, from the stored images."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from synthvlm.config import RunConfig, ScorersConfig
from synthvlm.core import fsio, schema
from synthvlm.core.checkpoint import ROWS, TaskParts, concat
from synthvlm.core.needs import Model, Need
from synthvlm.core.parallel import map_in_threads
from synthvlm.core.progress import report_rows
from synthvlm.core.stage import Stage, Task, TaskStats, rejected_table
from synthvlm.core.webdataset import iter_tar


class ScoreStage(Stage):
    """One task per generate shard; images are decoded from the tar exactly as users will read them."""

    name = "score"
    upstream = ("generate",)
    unit = "images"
    uses_model = True

    @classmethod
    def needs(cls, config: RunConfig) -> list[Need]:
        from synthvlm.score.pairs import scorer_class

        score = config.score
        clip = Model("score.clip_model", score.clip_model, "transformers", score.clip_revision, "tiny-clip")
        scorers = score.scorers
        return [
            clip,
            *(
                need
                for name in scorers.enabled()
                for need in scorer_class(name).needs(getattr(scorers, name), field=f"score.scorers.{name}")
            ),
        ]

    def settings(self) -> dict[str, Any]:
        score = self.config.score
        # Fields added after the first release are recorded only when they differ from their defaults: the
        # scores of a default config are what they were before the fields existed, so its fingerprint is too.
        later = {"ssim_data_range": 255, "scorers": ScorersConfig(), "embeddings": True}
        exclude = {"device"} | {k for k, default in later.items() if getattr(score, k) == default}
        return score.model_dump(exclude=exclude)

    def phases(self) -> list[str]:
        return ["score"]

    def tasks(self, phase: str) -> list[Task]:
        count = len(self.upstream_dir("generate").shards())
        return [Task(phase, i) for i in range(count)]

    def run_task(self, task: Task) -> TaskStats:
        import torch

        from synthvlm.score.clip import clip_score, scorer_for
        from synthvlm.score.pairs import scorers_for
        from synthvlm.score.ssim import paper_ssim_batch

        cfg = self.config.score
        names = cfg.scorers.enabled()
        table_schema = schema.score_schema(names)
        threads = torch.get_num_threads()
        generate = self.upstream_dir("generate")
        candidates = fsio.read_table(generate.shard(task.index))
        good = candidates.filter(pc.equal(candidates.column("status"), "ok"))
        todo = good.select(
            ["key", "caption_id", "candidate_index", "caption", "image_shard", "image_name"]
        ).to_pylist()
        parts = TaskParts(self.layout, task.name)
        resumed = parts.committed()
        # Every row of `todo` is in one part, scored or rejected, in order: a rerun goes on after them.
        position = sum(parts.table_rows(i, ROWS) + parts.table_rows(i, "rejected") for i in range(resumed))
        report_rows(position)
        tar = generate.image_shard(task.index)
        wanted = [r["image_name"] for r in todo[position:]]
        blobs: dict[str, bytes] = {}
        if wanted:
            with fsio.local_copy(tar) as local:
                blobs = dict(iter_tar(local, set(wanted)))
        rejected: list[dict[str, Any]] = []
        batch: list[tuple[dict[str, Any], Image.Image]] = []
        n_parts = resumed

        def flush() -> None:
            nonlocal n_parts
            images = [im for _, im in batch]
            captions = [r["caption"] for r, _ in batch]
            scorer = scorer_for(cfg, models_dir=self.models_dir)
            cos, image_emb, text_emb = scorer.embed(images, captions)
            clip = clip_score(cos)
            # The worker's CPU budget (torch's thread count: what Ray gives the actor) computes SSIM.
            ssim = paper_ssim_batch(
                images, size=cfg.ssim_size, low=cfg.ssim_low, data_range=cfg.ssim_data_range, workers=threads
            )
            columns = {
                "clip": clip,
                "ssim": np.asarray(ssim, dtype=np.float64),
                "weighted": clip + cfg.ssim_weight * np.asarray(ssim, dtype=np.float64),
            }
            for extra in scorers_for(cfg, run_dir=self.run_dir, models_dir=self.models_dir):
                columns.update(extra.score(images, captions))
            rows = [
                {**row, **{name: values[i].item() for name, values in columns.items()}}
                for i, (row, _) in enumerate(batch)
            ]
            if cfg.embeddings:
                keys = [r["key"] for r, _ in batch]
                parts.write_table(n_parts, "embeddings", schema.embeddings_table(keys, image_emb, text_emb))
            parts.write_table(n_parts, "rejected", rejected_table(self.name, rejected))
            report_rows(len(batch) + len(rejected))
            rejected.clear()
            batch.clear()
            parts.commit(n_parts, pa.Table.from_pylist(rows, schema=table_schema))
            n_parts += 1

        def decode(row: dict[str, Any]) -> Image.Image | Exception:
            data = blobs.get(row["image_name"])
            try:
                if data is None:
                    raise ValueError("image missing from its shard")
                return Image.open(io.BytesIO(data)).convert("RGB")
            except (ValueError, OSError) as exc:
                return exc

        # Images are decoded a batch-sized window at a time on the worker's threads and consumed in order,
        # so batches hold the same images as a one-by-one decode would give them.
        for start in range(position, len(todo), cfg.batch_size):
            window = todo[start : start + cfg.batch_size]
            for row, image in zip(window, map_in_threads(decode, window, threads), strict=True):
                if isinstance(image, Exception):
                    rejected.append(
                        {
                            "id": row["key"],
                            "caption": row["caption"],
                            "reason": "unreadable_image",
                            "detail": str(image).splitlines()[0],
                        }
                    )
                    continue
                batch.append((row, image))
                if len(batch) == cfg.batch_size:
                    flush()
        if batch:
            flush()
        scored = parts.table(ROWS, n_parts, table_schema)
        dropped = parts.table("rejected", n_parts, schema.REJECTED)
        if rejected:  # unreadable images after the last batch
            dropped = concat([dropped, rejected_table(self.name, rejected)], schema.REJECTED)
        fsio.write_table(self.layout.shard(task.index), scored)
        if cfg.embeddings:
            vectors = parts.table("embeddings", n_parts, schema.EMBEDDINGS)
            fsio.write_table(self.layout.embeddings(task.index), vectors)
        self.write_rejected_table(task, dropped)
        stats_extra = {
            "clip_sum": float(np.sum(scored.column("clip").to_numpy())),
            "ssim_sum": float(np.sum(scored.column("ssim").to_numpy())),
        }
        n_rejected = dropped.num_rows
        return TaskStats(
            good.num_rows,
            scored.num_rows,
            {"unreadable_image": n_rejected} if n_rejected else {},
            stats_extra,
        )
