"""The curate step contract: a step decides which rows of a shard it keeps, and says why it drops the rest.

A step only sees Arrow tables, never the run directory: the curate stage reads its input shard, calls
`decide`, and writes the kept rows and the rejected rows the same way for every step. A planned step
(exact and near dedup) first looks at the whole pool in one task: `plan` turns every shard's input into one
plan table per shard, and `decide` then reads the shard's plan instead of looking beyond the shard.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from synthvlm.config import CurateConfig
    from synthvlm.core import fsio
    from synthvlm.core.needs import Need

OPERATIONAL = frozenset({"device", "concurrency", "timeout", "max_retries", "backoff", "api_key_env"})
"""Config fields that change how a step runs but never what it outputs: kept out of the fingerprint."""


@dataclass(frozen=True)
class Drop:
    """One dropped row of a shard: its position, and the reason, value and detail its rejected row gets."""

    row: int
    reason: str
    value: float | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Decision:
    """What a step does with one shard: one keep flag per row, and a `Drop` for every row it does not keep."""

    keep: list[bool]
    drops: list[Drop] = field(default_factory=list)


class CurateStep(ABC):
    """One curate step. Steps are small and picklable; models load on first use inside `decide`."""

    name: ClassVar[str]
    """Its phase name (and the prefix of its completion records and rejected-row shards)."""
    folder: ClassVar[str]
    """The folder its kept rows go to when another step follows (the last configured step writes `data`)."""
    plan_columns: ClassVar[tuple[str, ...]] = ()
    """For a planned step, the input columns its `<name>-plan` phase reads; empty: no plan phase."""

    @property
    def planned(self) -> bool:
        """Whether a `<name>-plan` phase looks at the whole pool before the per-shard phase."""
        return bool(self.plan_columns)

    @classmethod
    def needs(cls, config: CurateConfig) -> list[Need]:
        """What the step will need when the config sets it up (models, files, extras, an endpoint)."""
        return []

    @classmethod
    @abstractmethod
    def from_config(cls, config: CurateConfig, *, run_dir: fsio.RunPath) -> CurateStep | None:
        """The step as the curate config sets it up, or None when the config leaves it out."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Its entries of the curate fingerprint: everything that determines what it keeps and writes."""

    @abstractmethod
    def decide(self, table: pa.Table, plan: pa.Table | None = None) -> Decision:
        """Which rows of one input shard stay; `plan` is the shard's plan table for a planned step."""

    def plan(self, tables: Sequence[pa.Table]) -> list[pa.Table]:
        """A planned step's plan: one table per input shard (each read with `plan_columns` only)."""
        raise NotImplementedError(f"{self.name} has no plan phase")

    def finish(self, kept: pa.Table) -> pa.Table:
        """The kept rows as this step writes them: a step may add a column a later step needs, or drop one."""
        return kept


def representative_plans(
    tables: Sequence[pa.Table],
    representative: np.ndarray,
    *,
    schema: pa.Schema,
    dup_of: Mapping[str, Sequence[Any]],
) -> list[pa.Table]:
    """Per-shard plans from one representative row index per pool row (itself when the row is kept).

    Each plan row is `keep`, plus, for every `dup_of` column, the representative's value when it is dropped.
    """
    keep = representative == np.arange(representative.shape[0])
    plans = []
    offset = 0
    for table in tables:
        rows = range(offset, offset + table.num_rows)
        columns = {"keep": pa.array(keep[offset : offset + table.num_rows])}
        for column, values in dup_of.items():
            columns[column] = pa.array(
                [None if keep[r] else values[representative[r]] for r in rows], type=pa.string()
            )
        plans.append(pa.table(columns, schema=schema))
        offset += table.num_rows
    return plans
