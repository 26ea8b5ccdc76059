"""Select: best of N candidates per caption, then a global top-K / fraction / threshold cut."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthvlm.core import fsio, schema
from synthvlm.core.errors import UserError
from synthvlm.core.needs import Extra, Need
from synthvlm.core.stage import Stage, Task, TaskStats

if TYPE_CHECKING:
    from synthvlm.config import RunConfig


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

    @classmethod
    def needs(cls, config: RunConfig) -> list[Need]:
        if config.select.strategy != "balanced":
            return []
        return [Extra("select.strategy balanced", ("faiss",), "pip install 'synthvlm[select]'")]

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
        names = self.config.score.scorers.enabled()
        files = self.upstream_dir("score").shards()
        weights = key_weights(cfg.key)
        safety = ["nsfw"] if "nsfw" in names else []
        cols = ["key", "caption_id", "candidate_index", *weights, *safety]
        light = (
            pa.concat_tables([fsio.read_table(f, columns=cols) for f in files])
            if files
            else schema.score_schema(names).empty_table().select(cols)
        )
        value = key_values(light, cfg.key)
        keyed = pa.table(
            {
                "caption_id": light.column("caption_id"),
                "candidate_index": light.column("candidate_index"),
                "value": pa.array(value, pa.float64()),
            }
        )
        # Reason per input row: 0 selected, then the REASONS below (index + 1).
        reasons = np.full(light.num_rows, 1 + REASONS.index("not_best_of_n"), dtype=np.int8)
        eligible = np.ones(light.num_rows, dtype=bool)
        if safety:
            eligible = ~light.column("nsfw").to_numpy(zero_copy_only=False)
            reasons[~eligible] = 1 + REASONS.index("unsafe")
        pool = np.flatnonzero(eligible)
        candidates = keyed.take(pool) if safety else keyed  # no copy of all rows when nothing is flagged
        ranked = pool[rank_candidates(candidates, key="value", best_of_n=cfg.best_of_n)]
        reasons[ranked] = 1 + REASONS.index("not_selected")
        if cfg.strategy == "balanced":
            chosen = self._balanced(ranked, value, reasons)
        else:
            k = cut(
                len(ranked), value[ranked], top_k=cfg.top_k, fraction=cfg.fraction, threshold=cfg.threshold
            )
            chosen = ranked[:k]
        reasons[chosen] = 0
        k = len(chosen)
        cutoff = float(value[chosen[-1]]) if k else float("nan")

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
            else schema.score_schema(names).empty_table().append_column("rank", pa.array([], pa.int64()))
        )
        selected = selected.take(pc.sort_indices(selected, sort_keys=[("rank", "ascending")]))
        selected = selected.append_column(
            "cutoff", pa.array(np.full(selected.num_rows, cutoff), type=pa.float64())
        )
        fsio.write_table(self.layout.shard(0), selected.cast(schema.selection_schema(names)))

        mask = pa.array(reasons != 0)
        n_rejected = int(np.count_nonzero(reasons))
        reason = pa.DictionaryArray.from_arrays(
            pa.array(reasons[reasons != 0] - 1, pa.int8()), pa.array(REASONS)
        ).cast(pa.string())
        columns = {
            "id": light.column("key").filter(mask),
            "stage": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n_rejected, np.int8)), pa.array([self.name])
            ).cast(pa.string()),
            "reason": reason,
            "value": pa.array(value, pa.float64()).filter(mask),
        }
        rejected = pa.table(
            [columns.get(f.name, pa.nulls(n_rejected, f.type)) for f in schema.REJECTED],
            schema=schema.REJECTED,
        )
        self.write_rejected_table(task, rejected)
        counts = np.bincount(reasons, minlength=len(REASONS) + 1)
        dropped = {r: int(counts[i + 1]) for i, r in enumerate(REASONS) if counts[i + 1]}
        return TaskStats(light.num_rows, k, dropped, {"cutoff": cutoff if k else 0.0})

    def _cut(self, ranked_values: np.ndarray) -> int:
        """How many of the ranked rows the configured cut keeps."""
        cfg = self.config.select
        return cut(
            len(ranked_values), ranked_values, top_k=cfg.top_k, fraction=cfg.fraction, threshold=cfg.threshold
        )

    def _balanced(self, ranked: np.ndarray, value: np.ndarray, reasons: np.ndarray) -> np.ndarray:
        """The balanced strategy over the ranked rows; marks its drops in `reasons`, returns the chosen rows
        in rank order."""
        from synthvlm.select.balanced import cluster, near_duplicates, quota_fill, subclusters

        balanced = self.config.select.balanced
        image_emb = self._image_embeddings()
        labels = np.zeros(len(image_emb), dtype=np.int32)
        labels[ranked] = cluster(
            image_emb[ranked],
            clusters=balanced.clusters,
            iterations=balanced.iterations,
            seed=self.config.seed,
        )
        # SemDeDup inside sub-clusters of each cluster; the cap below still counts whole clusters.
        groups = subclusters(image_emb, ranked, labels, iterations=balanced.iterations, seed=self.config.seed)
        duplicate = near_duplicates(image_emb, ranked, groups, epsilon=balanced.epsilon)
        reasons[duplicate] = 1 + REASONS.index("near_duplicate_image")
        kept = ranked[~duplicate[ranked]]
        k = self._cut(value[kept])
        chosen = kept[quota_fill(labels[kept], k)]
        # The rows the cap displaced: a plain top-K of `kept` would have taken them.
        displaced = np.setdiff1d(kept[:k], chosen, assume_unique=True)
        reasons[displaced] = 1 + REASONS.index("cluster_quota")
        return chosen

    def _image_embeddings(self) -> np.ndarray:
        """Every score row's image embedding (float16), in score shard order."""
        score = self.upstream_dir("score")
        files = score.embedding_shards()
        if not self.config.score.embeddings or len(files) != len(score.shards()):
            raise UserError(
                "select.strategy balanced needs the CLIP embeddings the score stage keeps: set "
                f"score.embeddings: true and rerun with --from score (run {self.run_dir})"
            )
        if not files:
            return np.zeros((0, 0), dtype=np.float16)
        tables = [fsio.read_table(f, columns=["image_emb"]) for f in files]
        return schema.embedding_matrix(pa.concat_tables(tables).column("image_emb"))


REASONS = ("not_selected", "not_best_of_n", "unsafe", "near_duplicate_image", "cluster_quota")
"""Why select leaves a row out (docs/metrics.md): below the cut, a better candidate of the same caption,
flagged by the safety checker, a near-duplicate of a better-ranked image, or displaced by a cluster's cap."""


def key_weights(key: str | dict[str, float]) -> dict[str, float]:
    """A ranking key as column weights: a column name is weight 1 on it."""
    return {key: 1.0} if isinstance(key, str) else dict(key)


def key_label(key: str | dict[str, float]) -> str:
    """How reports name a ranking key: the column, or its weighted sum (`1·vqascore + 0.5·ssim`)."""
    if isinstance(key, str):
        return key
    return " + ".join(f"{weight:g}·{name}" for name, weight in key.items())


def key_values(table: pa.Table, key: str | dict[str, float]) -> np.ndarray:
    """The ranking key per row: the column itself, or sum(weight * column) in the key's order."""
    if isinstance(key, str):
        return table.column(key).to_numpy().astype(np.float64)
    value = np.zeros(table.num_rows, dtype=np.float64)
    for name, weight in key.items():
        value = value + weight * table.column(name).to_numpy()
    return value
