"""Score: CLIPScore (max(cosine, 0)) + lambda * SSIM of every good candidate, from the stored images."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from synthvlm import fsio, schema
from synthvlm.config import BUILTIN
from synthvlm.devices import resolve_device
from synthvlm.images import iter_tar
from synthvlm.parallel import map_in_threads
from synthvlm.progress import report_rows
from synthvlm.stage import Stage, Task, TaskStats

_SCORERS: dict[str, Any] = {}


def _scorer(stage: ScoreStage) -> Any:
    """One CLIP model per worker process and config; it preprocesses on the worker's threads."""
    import torch

    from synthvlm.score.clip import ClipScorer

    cfg = stage.config.score
    key = cfg.model_dump_json() + str(stage.run_dir)
    if key not in _SCORERS:
        model = cfg.clip_model
        if model.startswith(BUILTIN):
            from synthvlm.models.tiny import build_tiny_clip

            model = str(build_tiny_clip(stage.models_dir / model.removeprefix(BUILTIN)))
        _SCORERS.clear()
        _SCORERS[key] = ClipScorer(
            model,
            revision=cfg.clip_revision,
            device=resolve_device(cfg.device),
            prefix=cfg.prefix,
            batch_size=cfg.batch_size,
            workers=torch.get_num_threads(),
        )
    return _SCORERS[key]


class ScoreStage(Stage):
    """One task per generate shard; images are decoded from the tar exactly as users will read them."""

    name = "score"
    upstream = ("generate",)
    unit = "images"
    uses_model = True

    def settings(self) -> dict[str, Any]:
        return self.config.score.model_dump(exclude={"device"})

    def phases(self) -> list[str]:
        return ["score"]

    def tasks(self, phase: str) -> list[Task]:
        count = len(sorted((self.run_dir / "generate" / "data").glob("part-*.parquet")))
        return [Task(phase, i) for i in range(count)]

    def run_task(self, task: Task) -> TaskStats:
        import torch

        from synthvlm.score.clip import clip_score
        from synthvlm.score.ssim import paper_ssim_batch

        cfg = self.config.score
        threads = torch.get_num_threads()
        candidates = fsio.read_table(self.run_dir / "generate" / "data" / f"part-{task.index:05d}.parquet")
        good = candidates.filter(pc.equal(candidates.column("status"), "ok"))
        tar = self.run_dir / "generate" / "images" / f"part-{task.index:05d}.tar"
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
            cos = _scorer(self).cosines(images, [r["caption"] for r, _ in batch])
            clip = clip_score(cos)
            # The worker's CPU budget (torch's thread count: what Ray gives the actor) computes SSIM.
            ssim = paper_ssim_batch(images, size=cfg.ssim_size, low=cfg.ssim_low, workers=threads)
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
        fsio.write_table(self.data_path(task.index), pa.Table.from_pylist(rows, schema=schema.SCORE))
        self.write_rejected(task, rejected)
        stats_extra = {
            "clip_sum": float(np.sum([r["clip"] for r in rows])),
            "ssim_sum": float(np.sum([r["ssim"] for r in rows])),
        }
        return TaskStats(
            good.num_rows, len(rows), {"unreadable_image": len(rejected)} if rejected else {}, stats_extra
        )
