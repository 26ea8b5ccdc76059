"""Select: best of N candidates per caption, then a global top-K / fraction / threshold cut."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthvlm import fsio, schema
from synthvlm.stage import Stage, Task, TaskStats


def rank_candidates(light: pa.Table, *, key: str, best_of_n: bool) -> np.ndarray:
    """Row indices in ranking order: `key` descending, ties by caption_id then candidate_index ascending.

    With best_of_n, only each caption's first (best) row in that order is kept.
    """
    order = pc.sort_indices(
        light,
        sort_keys=[(key, "descending"), ("caption_id", "ascending"), ("candidate_index", "ascending")],
    ).to_numpy()
    if not best_of_n or len(order) == 0:
        return order
    codes = pc.dictionary_encode(light.column("caption_id")).combine_chunks().indices.to_numpy()
    _, first = np.unique(codes[order], return_index=True)
    return order[np.sort(first)]


def cut(n: int, values: np.ndarray, *, top_k: int | None, fraction: float | None, threshold: float | None) -> int:
    """How many of `n` ranked rows are selected; `values` is the ranking key in rank order."""
    if top_k is not None:
        return min(top_k, n)
    if fraction is not None:
        return min(n, math.ceil(fraction * n))
    assert threshold is not None
    return int(np.count_nonzero(values >= threshold))


class SelectStage(Stage):
    """One task over the light columns of every score shard; never touches images."""

    name = "select"
    upstream = ("score",)
    unit = "candidates"

    def settings(self) -> dict[str, Any]:
        return self.config.select.model_dump()

    def phases(self) -> list[str]:
        return ["select"]

    def tasks(self, phase: str) -> list[Task]:
        return [Task(phase, 0)]

    def run_task(self, task: Task) -> TaskStats:
        cfg = self.config.select
        files = sorted((self.run_dir / "score" / "data").glob("part-*.parquet"))
        cols = ["key", "caption_id", "candidate_index", cfg.key]
        light = pa.concat_tables([pq.read_table(f, columns=cols) for f in files]) if files else schema.SCORE.empty_table().select(cols)
        ranked = rank_candidates(light.select(["caption_id", "candidate_index", cfg.key]), key=cfg.key, best_of_n=cfg.best_of_n)
        values = light.column(cfg.key).to_numpy()[ranked]
        k = cut(len(ranked), values, top_k=cfg.top_k, fraction=cfg.fraction, threshold=cfg.threshold)
        chosen = ranked[:k]
        cutoff = float(values[k - 1]) if k else float("nan")

        # Gather full rows of the chosen candidates shard by shard, then put them in rank order.
        rank_of = np.full(light.num_rows, -1, dtype=np.int64)
        rank_of[chosen] = np.arange(1, k + 1)
        pieces, offset = [], 0
        for f in files:
            n = pq.ParquetFile(f).metadata.num_rows
            local = rank_of[offset : offset + n]
            if np.any(local > 0):
                table = pq.read_table(f).filter(pa.array(local > 0))
                pieces.append(table.append_column("rank", pa.array(local[local > 0], type=pa.int64())))
            offset += n
        selected = pa.concat_tables(pieces) if pieces else schema.SCORE.empty_table().append_column("rank", pa.array([], pa.int64()))
        selected = selected.take(pc.sort_indices(selected, sort_keys=[("rank", "ascending")]))
        selected = selected.append_column("cutoff", pa.array(np.full(selected.num_rows, cutoff), type=pa.float64()))
        fsio.write_table(self.data_path(0), selected.cast(schema.SELECTION))

        status = np.full(light.num_rows, "not_best_of_n", dtype=object)
        status[ranked] = "not_selected"
        status[chosen] = ""
        mask = status != ""
        rejected = pa.table({
            "id": light.column("key").filter(pa.array(mask)),
            "reason": pa.array(status[mask], type=pa.string()),
            "value": pa.array(light.column(cfg.key).to_numpy()[mask], type=pa.float64()),
        })
        full = pa.table({name: rejected[name] if name in rejected.column_names else pa.nulls(rejected.num_rows, field.type)
                         for name, field in zip(schema.REJECTED.names, schema.REJECTED, strict=True)})
        full = full.set_column(full.schema.get_field_index("stage"), "stage", pa.array([self.name] * full.num_rows, pa.string()))
        fsio.write_table(self.dir / "rejected" / f"{task.name}.parquet", full.cast(schema.REJECTED))
        dropped = {"not_best_of_n": light.num_rows - len(ranked), "not_selected": len(ranked) - k}
        return TaskStats(light.num_rows, k, {r: n for r, n in dropped.items() if n}, {"cutoff": cutoff if k else 0.0})
