"""Score: CLIPScore (max(cosine, 0)) + lambda * SSIM of every good candidate, from the stored images."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from synthvlm.core import fsio, schema
from synthvlm.core.parallel import map_in_threads
from synthvlm.core.progress import report_rows
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.core.webdataset import iter_tar


class ScoreStage(Stage):
    """One task per generate shard; images are decoded from the tar exactly as users will read them."""

    name = "score"
    upstream = ("generate",)
    unit = "images"
    uses_model = True

    def settings(self) -> dict[str, Any]:
        score = self.config.score
        # ssim_data_range is recorded only when it is not the default 255: the scores of a default config
        # are what they were before the field existed, so its fingerprint must be too.
        exclude = {"device"} | ({"ssim_data_range"} if score.ssim_data_range == 255 else set())
        return score.model_dump(exclude=exclude)

    def phases(self) -> list[str]:
        return ["score"]

    def tasks(self, phase: str) -> list[Task]:
        count = len(self.upstream_dir("generate").shards())
        return [Task(phase, i) for i in range(count)]

    def run_task(self, task: Task) -> TaskStats:
        import torch

        from synthvlm.score.clip import clip_score, scorer_for
        from synthvlm.score.ssim import paper_ssim_batch

        cfg = self.config.score
        threads = torch.get_num_threads()
        generate = self.upstream_dir("generate")
        candidates = fsio.read_table(generate.shard(task.index))
        good = candidates.filter(pc.equal(candidates.column("status"), "ok"))
        tar = generate.image_shard(task.index)
        wanted = good.column("image_name").to_pylist()
        blobs: dict[str, bytes] = {}
        if wanted:
            with fsio.local_copy(tar) as local:
                blobs = dict(iter_tar(local, set(wanted)))
        rows: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        batch: list[tuple[dict[str, Any], Image.Image]] = []

        def flush() -> None:
            images = [im for _, im in batch]
            scorer = scorer_for(cfg, models_dir=self.models_dir)
            cos = scorer.cosines(images, [r["caption"] for r, _ in batch])
            clip = clip_score(cos)
            # The worker's CPU budget (torch's thread count: what Ray gives the actor) computes SSIM.
            ssim = paper_ssim_batch(
                images, size=cfg.ssim_size, low=cfg.ssim_low, data_range=cfg.ssim_data_range, workers=threads
            )
            for (row, _), c, s in zip(batch, clip, ssim, strict=True):
                rows.append(
                    {**row, "clip": float(c), "ssim": float(s), "weighted": float(c + cfg.ssim_weight * s)}
                )
            report_rows(len(batch))
            batch.clear()

        def decode(row: dict[str, Any]) -> Image.Image | Exception:
            data = blobs.get(row["image_name"])
            try:
                if data is None:
                    raise ValueError("image missing from its shard")
                return Image.open(io.BytesIO(data)).convert("RGB")
            except (ValueError, OSError) as exc:
                return exc

        todo = good.select(
            ["key", "caption_id", "candidate_index", "caption", "image_shard", "image_name"]
        ).to_pylist()
        # Images are decoded a batch-sized window at a time on the worker's threads and consumed in order,
        # so batches hold the same images as a one-by-one decode would give them.
        for start in range(0, len(todo), cfg.batch_size):
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
        fsio.write_table(self.layout.shard(task.index), pa.Table.from_pylist(rows, schema=schema.SCORE))
        self.write_rejected(task, rejected)
        stats_extra = {
            "clip_sum": float(np.sum([r["clip"] for r in rows])),
            "ssim_sum": float(np.sum([r["ssim"] for r in rows])),
        }
        return TaskStats(
            good.num_rows, len(rows), {"unreadable_image": len(rejected)} if rejected else {}, stats_extra
        )
