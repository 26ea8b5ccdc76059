"""Curate: rule filters, optional perplexity / alignment, exact then near dedup, decontamination, LLM judge.

Each configured step is one or two phases, cheapest first. A per-shard step reads the shards the step
before it wrote and writes its own (`data/` for the last step); the dedup steps first plan over the whole
pool in one task, then apply the plan per shard. Every dropped caption is a rejected row of its phase.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthvlm.core import fsio, layout, schema
from synthvlm.core.devices import resolve_device
from synthvlm.core.errors import UserError
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.models import registry

STEP_ORDER = ("filter", "perplexity", "alignment", "dedup", "neardup", "decontam", "judge")
"""The synthvlm recipe's order: cheapest first, the paid LLM judge last."""
_OUTPUT = {
    "filter": "filtered",
    "perplexity": "perplexity",
    "alignment": "aligned",
    "dedup": "deduped",
    "neardup": "neardup",
    "decontam": "decontam",
    "judge": "judged",
}
_PLANNED = {"dedup", "neardup"}
# Settings that change how a step runs but never what it outputs: kept out of the fingerprint.
_OPERATIONAL = {"device", "concurrency", "timeout", "max_retries", "backoff", "api_key_env"}
def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class CurateStage(Stage):
    """Phases: `filter`, then per configured step `perplexity`, `alignment`, `dedup-plan` + `dedup`,
    `neardup-plan` + `neardup`, `decontam`, `judge`."""

    name = "curate"
    upstream = ("ingest",)
    unit = "captions"

    def filter_specs(self) -> list[dict[str, Any]]:
        """The resolved filter list: the config's own, else the recipe's."""
        from synthvlm.steps.filters import RECIPES

        cfg = self.config.curate
        if cfg.filters is not None:
            return [spec.model_dump() for spec in cfg.filters]
        if cfg.recipe not in RECIPES:
            raise UserError(f"unknown curation recipe {cfg.recipe!r}; valid: {', '.join(sorted(RECIPES))}")
        return [{"name": name, "params": dict(params)} for name, params in RECIPES[cfg.recipe]]

    def steps(self) -> list[str]:
        """The configured steps in recipe order."""
        cfg = self.config.curate
        enabled = {
            "filter": True,
            "perplexity": cfg.perplexity is not None,
            "alignment": cfg.alignment is not None,
            "dedup": cfg.dedup,
            "neardup": cfg.near_dup is not None,
            "decontam": cfg.decontamination is not None,
            "judge": cfg.judge is not None,
        }
        return [step for step in STEP_ORDER if enabled[step]]

    def settings(self) -> dict[str, Any]:
        cfg = self.config.curate
        out: dict[str, Any] = {"filters": self.filter_specs(), "dedup": cfg.dedup}
        for key in ("perplexity", "alignment", "near_dup", "decontamination", "judge"):
            value = getattr(cfg, key)
            if value is not None:
                out[key] = value.model_dump(exclude=_OPERATIONAL)
        if cfg.decontamination is not None:
            from synthvlm.readers import UnreadableFileError, expand_inputs

            try:
                files = expand_inputs(cfg.decontamination.eval_files)
            except UnreadableFileError as exc:
                raise UserError(f"curate.decontamination.eval_files: {exc}") from None
            out["decontamination"]["sha256"] = {f: _sha256(f) for f in files}
        if cfg.judge is not None:
            from synthvlm.steps.judge import load_template, template_hash

            out["judge"]["template_sha256"] = template_hash(load_template(cfg.judge.template))
        return out

    def phases(self) -> list[str]:
        phases: list[str] = []
        for step in self.steps():
            phases += [f"{step}-plan", step] if step in _PLANNED else [step]
        return phases

    def _ingest_shards(self) -> list[str]:
        return [str(p) for p in self.upstream_dir("ingest").shards()]

    def _input(self, step: str, index: int) -> fsio.RunPath:
        steps = self.steps()
        k = steps.index(step)
        if k == 0:
            return self.upstream_dir("ingest").shard(index)
        return self._output(steps[k - 1], index)

    def _output(self, step: str, index: int) -> fsio.RunPath:
        return self.layout.shard(index, "data" if step == self.steps()[-1] else _OUTPUT[step])

    def tasks(self, phase: str) -> list[Task]:
        shards = self._ingest_shards()
        if phase.endswith("-plan"):
            return [Task(phase, 0, (len(shards),))]
        return [Task(phase, i) for i in range(len(shards))]

    def run_task(self, task: Task) -> TaskStats:
        if task.phase == "filter":
            return self._filter(task)
        if task.phase == "dedup-plan":
            return self._plan(task)
        if task.phase == "dedup":
            return self._dedup(task)
        if task.phase == "neardup-plan":
            return self._neardup_plan(task)
        if task.phase == "neardup":
            return self._neardup(task)
        decide = {
            "perplexity": self._perplexity,
            "alignment": self._alignment,
            "decontam": self._decontam,
            "judge": self._judge,
        }[task.phase]
        return self._per_shard(task, decide)

    # -- rules and exact dedup --------------------------------------------------------------------
    def _filter(self, task: Task) -> TaskStats:
        from synthvlm.steps.dedup import text_hashes
        from synthvlm.steps.filters import apply_filters, build_filter

        try:
            filters = [build_filter(s["name"], s["params"]) for s in self.filter_specs()]
        except ValueError as exc:
            raise UserError(f"curate: {exc}") from None
        table = fsio.read_table(self._input("filter", task.index))
        captions = table.column("caption").to_pylist()
        keep, drops = apply_filters(filters, captions)
        rejected = [
            {
                "id": table["id"][i].as_py(),
                "caption": captions[i],
                "reason": reason,
                "value": float(value),
                "source_file": table["source_file"][i].as_py(),
                "source_index": table["source_index"][i].as_py(),
            }
            for i, reason, value in drops
        ]
        kept = table.filter(pa.array(keep, type=pa.bool_()))
        if self.config.curate.dedup:
            hashes = text_hashes(kept.column("caption").to_pylist())
            kept = kept.append_column(schema.FILTERED.field("text_hash"), pa.array(hashes, type=pa.uint64()))
        fsio.write_table(self._output("filter", task.index), kept)
        self.write_rejected(task, rejected)
        dropped: dict[str, int] = {}
        for _, reason, _ in drops:
            dropped[reason] = dropped.get(reason, 0) + 1
        return TaskStats(table.num_rows, kept.num_rows, dropped)

    def _plan(self, task: Task) -> TaskStats:
        """First occurrence in pool order represents each normalised text; the rest point to it."""
        (n_shards,) = task.payload
        parts = [
            fsio.read_table(self._input("dedup", i), columns=["id", "text_hash"]) for i in range(n_shards)
        ]
        hashes = (
            np.concatenate([p.column("text_hash").to_numpy() for p in parts]) if parts else np.zeros(0, "u8")
        )
        ids = (
            np.concatenate([np.asarray(p.column("id").to_pylist(), dtype=object) for p in parts])
            if parts
            else []
        )
        _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        representative = first[inverse]
        keep = representative == np.arange(len(hashes))
        offset = 0
        for i, part in enumerate(parts):
            sl = slice(offset, offset + part.num_rows)
            dup_of = [None if k else ids[r] for k, r in zip(keep[sl], representative[sl], strict=True)]
            table = pa.table(
                {"keep": pa.array(keep[sl]), "dup_of": pa.array(dup_of, type=pa.string())},
                schema=schema.DEDUP_PLAN,
            )
            fsio.write_table(self.layout.shard(i, "dedup-plan"), table)
            offset += part.num_rows
        return TaskStats(0, 0)

    def _dedup(self, task: Task) -> TaskStats:
        table = fsio.read_table(self._input("dedup", task.index))
        plan = fsio.read_table(self.layout.shard(task.index, "dedup-plan"))
        keep = plan.column("keep")
        dropped = table.filter(pc.invert(keep))
        dup_of = plan.filter(pc.invert(keep)).column("dup_of").to_pylist()
        rejected = [
            {
                "id": row["id"],
                "caption": row["caption"],
                "reason": "duplicate_text",
                "detail": f"duplicate of {rep}",
                "source_file": row["source_file"],
                "source_index": row["source_index"],
            }
            for row, rep in zip(dropped.to_pylist(), dup_of, strict=True)
        ]
        kept = table.filter(keep).drop_columns(["text_hash"])
        fsio.write_table(self._output("dedup", task.index), kept.cast(schema.CAPTION))
        self.write_rejected(task, rejected)
        return TaskStats(table.num_rows, kept.num_rows, {"duplicate_text": len(rejected)} if rejected else {})

    # -- near-duplicates --------------------------------------------------------------------------
    def _neardup_plan(self, task: Task) -> TaskStats:
        """MinHash LSH clusters over the whole pool; each cluster's first caption in pool order stays."""
        from synthvlm.steps.neardup import plan_near_duplicates

        cfg = self.config.curate.near_dup
        (n_shards,) = task.payload
        parts = [
            fsio.read_table(self._input("neardup", i), columns=["id", "caption"]) for i in range(n_shards)
        ]
        ids = [v for p in parts for v in p.column("id").to_pylist()]
        captions = [v for p in parts for v in p.column("caption").to_pylist()]
        plan = plan_near_duplicates(
            captions,
            unit=cfg.shingle,
            size=cfg.shingle_size,
            num_perm=cfg.num_perm,
            threshold=cfg.threshold,
            seed=cfg.seed,
        )
        rep, keep = plan.representative, plan.keep
        offset = 0
        for i, part in enumerate(parts):
            rows = range(offset, offset + part.num_rows)
            table = pa.table(
                {
                    "keep": pa.array(keep[offset : offset + part.num_rows]),
                    "dup_of": pa.array([None if keep[r] else ids[rep[r]] for r in rows], type=pa.string()),
                    "dup_of_caption": pa.array(
                        [None if keep[r] else captions[rep[r]] for r in rows], type=pa.string()
                    ),
                },
                schema=schema.NEARDUP_PLAN,
            )
            fsio.write_table(self.layout.shard(i, "neardup-plan"), table)
            offset += part.num_rows
        return TaskStats(0, 0)

    def _neardup(self, task: Task) -> TaskStats:
        from synthvlm.steps.neardup import jaccard

        cfg = self.config.curate.near_dup
        plan = fsio.read_table(self.layout.shard(task.index, "neardup-plan"))

        def decide(table: pa.Table) -> tuple[list[bool], list[dict[str, Any]]]:
            keep = plan.column("keep").to_pylist()
            dup_of = plan.column("dup_of").to_pylist()
            rep_caption = plan.column("dup_of_caption").to_pylist()
            captions = table.column("caption").to_pylist()
            drops = [
                {
                    "row": i,
                    "reason": "near_duplicate",
                    "detail": f"cluster {dup_of[i]}",
                    "value": jaccard(captions[i], rep_caption[i], unit=cfg.shingle, size=cfg.shingle_size),
                }
                for i, k in enumerate(keep)
                if not k
            ]
            return keep, drops

        return self._per_shard(task, decide)

    # -- per-shard model and set steps ------------------------------------------------------------
    def _per_shard(self, task: Task, decide: Any) -> TaskStats:
        """Read the step's input shard, let `decide` pick the drops, write kept rows and rejected rows."""
        table = fsio.read_table(self._input(task.phase, task.index))
        keep, drops = decide(table)
        rows = table.select(["id", "caption", "source_file", "source_index"]).to_pylist()
        rejected = [{**rows[d.pop("row")], **d} for d in drops]
        kept = table.filter(pa.array(keep, type=pa.bool_()))
        fsio.write_table(self._output(task.phase, task.index), kept)
        self.write_rejected(task, rejected)
        dropped: dict[str, int] = {}
        for row in rejected:
            dropped[row["reason"]] = dropped.get(row["reason"], 0) + 1
        return TaskStats(table.num_rows, kept.num_rows, dropped)

    def _perplexity(self, table: pa.Table) -> tuple[list[bool], list[dict[str, Any]]]:
        from synthvlm.steps.perplexity import KenlmScorer, PerplexityScorer

        cfg = self.config.curate.perplexity
        if cfg.backend == "kenlm":
            if cfg.tokenizer is None:
                raise UserError(
                    "curate.perplexity: the kenlm backend needs `tokenizer` (a SentencePiece .model)"
                )
            scorer = registry.cached(
                "perplexity",
                ("kenlm", cfg.model, cfg.tokenizer), lambda: KenlmScorer(cfg.model, tokenizer=cfg.tokenizer)
            )
        else:
            model = registry.location(cfg.model, models_dir=self.models_dir)
            scorer = registry.cached(
                "perplexity",
                ("perplexity", model, cfg.revision, cfg.device, cfg.batch_size, cfg.max_tokens),
                lambda: PerplexityScorer(
                    model,
                    revision=cfg.revision,
                    device=resolve_device(cfg.device),
                    batch_size=cfg.batch_size,
                    max_tokens=cfg.max_tokens,
                ),
            )
        values = scorer.perplexities(table.column("caption").to_pylist())
        keep = [bool(v <= cfg.max_perplexity) for v in values]  # NaN (nothing to predict) is dropped
        drops = [
            {"row": i, "reason": "perplexity", "value": float(v)}
            for i, (k, v) in enumerate(zip(keep, values, strict=True))
            if not k
        ]
        return keep, drops

    def _alignment(self, table: pa.Table) -> tuple[list[bool], list[dict[str, Any]]]:
        from synthvlm.steps.alignment import align_table

        return align_table(table, config=self.config.curate.alignment, models_dir=self.models_dir)

    def _decontam(self, table: pa.Table) -> tuple[list[bool], list[dict[str, Any]]]:
        from synthvlm.steps.decontam import EvalIndex

        cfg = self.config.curate.decontamination
        index = registry.cached(
            "decontam",
            ("decontam", tuple(cfg.eval_files), cfg.format, cfg.ngram),
            lambda: EvalIndex.from_files(cfg.eval_files, n=cfg.ngram, fmt=cfg.format),
        )
        keep: list[bool] = []
        drops: list[dict[str, Any]] = []
        for i, caption in enumerate(table.column("caption").to_pylist()):
            match = index.match(caption)
            bad = match is not None and match.overlap >= cfg.threshold
            keep.append(not bad)
            if bad:
                drops.append(
                    {
                        "row": i,
                        "reason": "contaminated",
                        "value": match.overlap,
                        "detail": match.item.describe(),
                    }
                )
        return keep, drops

    def _judge(self, table: pa.Table) -> tuple[list[bool], list[dict[str, Any]]]:
        from synthvlm.steps.judge import (
            Judge,
            JudgeError,
            OpenAIBackend,
            ResponseCache,
            TransformersBackend,
            load_template,
        )

        cfg = self.config.curate.judge
        if cfg.backend == "openai":
            backend = registry.cached(
                "judge",
                ("openai", cfg),
                lambda: OpenAIBackend(
                    cfg.model,
                    base_url=cfg.base_url,
                    api_key_env=cfg.api_key_env,
                    concurrency=cfg.concurrency,
                    timeout=cfg.timeout,
                    max_retries=cfg.max_retries,
                    backoff=cfg.backoff,
                    max_new_tokens=cfg.max_new_tokens,
                ),
            )
        else:
            model = registry.location(cfg.model, models_dir=self.models_dir)
            # Keyed by the configured name, not this run's build path of a builtin model.
            backend = registry.cached(
                "judge",
                ("transformers", cfg, model),
                lambda: TransformersBackend(
                    model,
                    name=cfg.model,
                    device=resolve_device(cfg.device),
                    batch_size=cfg.batch_size,
                    max_new_tokens=cfg.max_new_tokens,
                ),
            )
        # Outside the stage folder, so `--from curate` keeps the answers already paid for.
        cache = ResponseCache(layout.judge_cache(self.run_dir))
        try:
            verdicts = Judge(backend, template=load_template(cfg.template), cache=cache).judge(
                table.column("caption").to_pylist()
            )
        except JudgeError as exc:
            raise UserError(f"curate.judge: {exc}") from None
        finally:
            cache.close()
        keep = [v.verdict is True for v in verdicts]
        drops = [
            {
                "row": i,
                "reason": "judge_no" if v.verdict is False else "judge_unparseable",
                "detail": v.answer,
            }
            for i, v in enumerate(verdicts)
            if v.verdict is not True
        ]
        return keep, drops
