"""Select: best of N candidates per caption, then a global top-K / fraction / threshold cut."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthvlm.core import fsio, schema
from synthvlm.core.stage import Stage, Task, TaskStats


def _order_key(value: np.ndarray) -> np.ndarray:
    """float64 -> uint64 with the same order (-0.0 equal to 0.0), NaN below everything: as NumPy sorts
    `-value`, where NaN comes last."""
    bits = (np.asarray(value, dtype=np.float64) + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    key = np.where(bits >> np.uint64(63) == 1, ~bits, bits | np.uint64(1 << 63))
    key[np.isnan(value)] = 0
    return key


def rank_candidates(light: pa.Table, *, key: str, best_of_n: bool) -> np.ndarray:
    """Row indices in ranking order: `key` descending, ties by caption_id then candidate_index ascending.

    With best_of_n, only each caption's best row in that order is kept. Strings are compared once, on the
    distinct caption ids; captions become dense ranks, so each caption's best row comes from scatter
    reductions (no sort of all rows), and one stable sort of the best rows by value finishes the ranking.
    """
    n = light.num_rows
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    encoded = pc.dictionary_encode(light.column("caption_id")).combine_chunks()
    n_captions = len(encoded.dictionary)
    # Rank of each distinct caption id in string order, so ties break by caption_id.
    dict_rank = np.empty(n_captions, dtype=np.int64)
    dict_rank[pc.sort_indices(encoded.dictionary).to_numpy()] = np.arange(n_captions)
    caption = dict_rank[encoded.indices.to_numpy()]
    value = light.column(key).to_numpy()
    candidate = light.column("candidate_index").to_numpy()
    if not best_of_n:
        return np.lexsort((candidate, caption, -value))
    order = _order_key(value)
    top = np.zeros(n_captions, dtype=np.uint64)
    np.maximum.at(top, caption, order)
    at_top = np.flatnonzero(order == top[caption])
    first = np.full(n_captions, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, caption[at_top], candidate[at_top])
    best = at_top[candidate[at_top] == first[caption[at_top]]]
    by_caption = np.empty(n_captions, dtype=np.int64)
    by_caption[caption[best]] = best  # indexed by caption rank: already in caption order
    return by_caption[np.argsort(~order[by_caption], kind="stable")]


def cut(
    n: int, values: np.ndarray, *, top_k: int | None, fraction: float | None, threshold: float | None
) -> int:
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
        select = self.config.select
        # The balanced strategy's settings are recorded only when it is used: a top-K run's fingerprint is
        # what it was before the strategy existed.
        exclude = {"strategy", "balanced"} if select.strategy == "top" else set()
        return select.model_dump(exclude=exclude)

    def phases(self) -> list[str]:
        return ["select"]

    def tasks(self, phase: str) -> list[Task]:
        return [Task(phase, 0)]

    def run_task(self, task: Task) -> TaskStats:
        cfg = self.config.select
        files = self.upstream_dir("score").shards()
        cols = ["key", "caption_id", "candidate_index", cfg.key]
        light = (
            pa.concat_tables([fsio.read_table(f, columns=cols) for f in files])
            if files
            else schema.SCORE.empty_table().select(cols)
        )
        ranked = rank_candidates(
            light.select(["caption_id", "candidate_index", cfg.key]), key=cfg.key, best_of_n=cfg.best_of_n
        )
        values = light.column(cfg.key).to_numpy()[ranked]
        k = cut(len(ranked), values, top_k=cfg.top_k, fraction=cfg.fraction, threshold=cfg.threshold)
        chosen = ranked[:k]
        cutoff = float(values[k - 1]) if k else float("nan")

        # Gather full rows of the chosen candidates shard by shard, then put them in rank order.
        rank_of = np.full(light.num_rows, -1, dtype=np.int64)
        rank_of[chosen] = np.arange(1, k + 1)
        pieces, offset = [], 0
        for f in files:
            n = fsio.parquet_rows(f)
            local = rank_of[offset : offset + n]
            if np.any(local > 0):
                table = fsio.read_table(f).filter(pa.array(local > 0))
                pieces.append(table.append_column("rank", pa.array(local[local > 0], type=pa.int64())))
            offset += n
        selected = (
            pa.concat_tables(pieces)
            if pieces
            else schema.SCORE.empty_table().append_column("rank", pa.array([], pa.int64()))
        )
        selected = selected.take(pc.sort_indices(selected, sort_keys=[("rank", "ascending")]))
        selected = selected.append_column(
            "cutoff", pa.array(np.full(selected.num_rows, cutoff), type=pa.float64())
        )
        fsio.write_table(self.layout.shard(0), selected.cast(schema.SELECTION))

        # Reason per input row: 0 selected, 1 not_selected, 2 not_best_of_n.
        reasons = np.full(light.num_rows, 2, dtype=np.int8)
        reasons[ranked] = 1
        reasons[chosen] = 0
        mask = pa.array(reasons != 0)
        n_rejected = int(np.count_nonzero(reasons))
        reason = pa.DictionaryArray.from_arrays(
            pa.array(reasons[reasons != 0] - 1, pa.int8()), pa.array(["not_selected", "not_best_of_n"])
        ).cast(pa.string())
        columns = {
            "id": light.column("key").filter(mask),
            "stage": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n_rejected, np.int8)), pa.array([self.name])
            ).cast(pa.string()),
            "reason": reason,
            "value": light.column(cfg.key).filter(mask),
        }
        rejected = pa.table(
            [columns.get(f.name, pa.nulls(n_rejected, f.type)) for f in schema.REJECTED],
            schema=schema.REJECTED,
        )
        self.write_rejected_table(task, rejected)
        dropped = {"not_best_of_n": light.num_rows - len(ranked), "not_selected": len(ranked) - k}
        return TaskStats(
            light.num_rows, k, {r: n for r, n in dropped.items() if n}, {"cutoff": cutoff if k else 0.0}
        )
