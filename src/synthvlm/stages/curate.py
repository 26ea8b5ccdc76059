"""Curate: rule filters per shard, then exact dedup on normalised text across the whole pool."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthvlm import fsio, schema
from synthvlm.errors import UserError
from synthvlm.stage import Stage, Task, TaskStats

FILTERED = schema.CAPTION.append(pa.field("text_hash", pa.uint64(), nullable=False))
PLAN = pa.schema([pa.field("keep", pa.bool_(), nullable=False), pa.field("dup_of", pa.string())])


class CurateStage(Stage):
    """Phases: `filter` (one task per ingest shard), then `dedup-plan` (one task) and `dedup` (per shard)."""

    name = "curate"
    upstream = ("ingest",)
    unit = "captions"

    def filter_specs(self) -> list[dict[str, Any]]:
        """The resolved filter list: the config's own, else the recipe's."""
        from synthvlm.curate.text_filters import RECIPES

        cfg = self.config.curate
        if cfg.filters is not None:
            return [spec.model_dump() for spec in cfg.filters]
        if cfg.recipe not in RECIPES:
            raise UserError(f"unknown curation recipe {cfg.recipe!r}; valid: {', '.join(sorted(RECIPES))}")
        return [{"name": name, "params": dict(params)} for name, params in RECIPES[cfg.recipe]]

    def settings(self) -> dict[str, Any]:
        return {"filters": self.filter_specs(), "dedup": self.config.curate.dedup}

    def phases(self) -> list[str]:
        return ["filter", "dedup-plan", "dedup"] if self.config.curate.dedup else ["filter"]

    def _ingest_shards(self) -> list[str]:
        return [str(p) for p in sorted((self.run_dir / "ingest" / "data").glob("part-*.parquet"))]

    def tasks(self, phase: str) -> list[Task]:
        shards = self._ingest_shards()
        if phase == "dedup-plan":
            return [Task(phase, 0, (len(shards),))]
        return [Task(phase, i) for i in range(len(shards))]

    def run_task(self, task: Task) -> TaskStats:
        if task.phase == "filter":
            return self._filter(task)
        if task.phase == "dedup-plan":
            return self._plan(task)
        return self._dedup(task)

    def _filter(self, task: Task) -> TaskStats:
        from synthvlm.curate.dedup import text_hashes
        from synthvlm.curate.text_filters import apply_filters, build_filter

        try:
            filters = [build_filter(s["name"], s["params"]) for s in self.filter_specs()]
        except ValueError as exc:
            raise UserError(f"curate: {exc}") from None
        table = pq.read_table(self.run_dir / "ingest" / "data" / f"part-{task.index:05d}.parquet")
        captions = table.column("caption").to_pylist()
        keep, drops = apply_filters(filters, captions)
        rejected = [
            {"id": table["id"][i].as_py(), "caption": captions[i], "reason": reason, "value": float(value),
             "source_file": table["source_file"][i].as_py(), "source_index": table["source_index"][i].as_py()}
            for i, reason, value in drops
        ]
        kept = table.filter(pa.array(keep, type=pa.bool_()))
        if self.config.curate.dedup:
            hashes = text_hashes(kept.column("caption").to_pylist())
            kept = kept.append_column(FILTERED.field("text_hash"), pa.array(hashes, type=pa.uint64()))
            fsio.write_table(self.data_path(task.index, "filtered"), kept)
        else:
            fsio.write_table(self.data_path(task.index), kept)
        self.write_rejected(task, rejected)
        dropped: dict[str, int] = {}
        for _, reason, _ in drops:
            dropped[reason] = dropped.get(reason, 0) + 1
        return TaskStats(table.num_rows, kept.num_rows, dropped)

    def _plan(self, task: Task) -> TaskStats:
        """First occurrence in pool order represents each normalised text; the rest point to it."""
        (n_shards,) = task.payload
        parts = [pq.read_table(self.data_path(i, "filtered"), columns=["id", "text_hash"]) for i in range(n_shards)]
        hashes = np.concatenate([p.column("text_hash").to_numpy() for p in parts]) if parts else np.zeros(0, "u8")
        ids = np.concatenate([np.asarray(p.column("id").to_pylist(), dtype=object) for p in parts]) if parts else []
        _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        representative = first[inverse]
        keep = representative == np.arange(len(hashes))
        offset = 0
        for i, part in enumerate(parts):
            sl = slice(offset, offset + part.num_rows)
            dup_of = [None if k else ids[r] for k, r in zip(keep[sl], representative[sl], strict=True)]
            table = pa.table({"keep": pa.array(keep[sl]), "dup_of": pa.array(dup_of, type=pa.string())}, schema=PLAN)
            fsio.write_table(self.data_path(i, "dedup-plan"), table)
            offset += part.num_rows
        return TaskStats(0, 0)

    def _dedup(self, task: Task) -> TaskStats:
        table = pq.read_table(self.data_path(task.index, "filtered"))
        plan = pq.read_table(self.data_path(task.index, "dedup-plan"))
        keep = plan.column("keep")
        dropped = table.filter(pc.invert(keep))
        dup_of = plan.filter(pc.invert(keep)).column("dup_of").to_pylist()
        rejected = [
            {"id": row["id"], "caption": row["caption"], "reason": "duplicate_text", "detail": f"duplicate of {rep}",
             "source_file": row["source_file"], "source_index": row["source_index"]}
            for row, rep in zip(dropped.to_pylist(), dup_of, strict=True)
        ]
        kept = table.filter(keep).drop_columns(["text_hash"])
        fsio.write_table(self.data_path(task.index), kept.cast(schema.CAPTION))
        self.write_rejected(task, rejected)
        return TaskStats(table.num_rows, kept.num_rows, {"duplicate_text": len(rejected)} if rejected else {})
