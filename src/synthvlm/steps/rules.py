"""The rule-filter step: the configured text filters (`synthvlm.steps.filters`), first to drop a row wins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from synthvlm.config import CurateConfig
from synthvlm.core import fsio, schema
from synthvlm.core.errors import UserError
from synthvlm.steps.base import CurateStep, Decision, Drop
from synthvlm.steps.dedup import text_hashes
from synthvlm.steps.filters import RECIPES, apply_filters, build_filter


def filter_specs(config: CurateConfig) -> list[dict[str, Any]]:
    """The resolved filter list: the config's own, else the recipe's."""
    if config.filters is not None:
        return [spec.model_dump() for spec in config.filters]
    if config.recipe not in RECIPES:
        raise UserError(f"unknown curation recipe {config.recipe!r}; valid: {', '.join(sorted(RECIPES))}")
    return [{"name": name, "params": dict(params)} for name, params in RECIPES[config.recipe]]


@dataclass(frozen=True, kw_only=True)
class RuleFilterStep(CurateStep):
    """Always the first step. With `hash_text`, kept rows carry the text hash exact dedup plans over."""

    name = "filter"
    folder = "filtered"

    specs: list[dict[str, Any]]
    """Filters as `{"name", "params"}` mappings, applied in order."""
    hash_text: bool = False
    """Add the `text_hash` column (the FILTERED schema): on when exact dedup follows."""

    @classmethod
    def from_config(cls, config: CurateConfig, *, run_dir: fsio.RunPath) -> RuleFilterStep:
        return cls(specs=filter_specs(config), hash_text=config.dedup)

    def settings(self) -> dict[str, Any]:
        # Whether exact dedup runs lives here: it is what decides the text_hash column this step writes.
        return {"filters": self.specs, "dedup": self.hash_text}

    def decide(self, table: pa.Table, plan: pa.Table | None = None) -> Decision:
        try:
            filters = [build_filter(s["name"], s["params"]) for s in self.specs]
        except ValueError as exc:
            raise UserError(f"curate: {exc}") from None
        keep, drops = apply_filters(filters, table.column("caption").to_pylist())
        return Decision(keep.tolist(), [Drop(i, reason, value=float(v)) for i, reason, v in drops])

    def finish(self, kept: pa.Table) -> pa.Table:
        if not self.hash_text:
            return kept
        hashes = text_hashes(kept.column("caption").to_pylist())
        return kept.append_column(schema.FILTERED.field("text_hash"), pa.array(hashes, type=pa.uint64()))
