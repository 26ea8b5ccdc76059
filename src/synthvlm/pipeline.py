"""The Python API: open a run, run stages (resuming), read its funnel. The CLI only wraps these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from synthvlm import card
from synthvlm.config import RunConfig, dump_config, parse_config
from synthvlm.core import fsio, layout
from synthvlm.core.driver import (
    check_fingerprint,
    is_complete,
    needs_first,
    reset_stages,
    run_stage,
    run_status,
)
from synthvlm.core.errors import UserError
from synthvlm.core.lock import run_lock
from synthvlm.executors import make_executor
from synthvlm.preflight import preflight
from synthvlm.stages import ORDER, STAGES
from synthvlm.stages.generate import by_generator


def load_run_config(run_dir: str | fsio.RunPath) -> RunConfig | None:
    """The resolved config saved in a run directory, or None for a new run."""
    path = layout.config_path(fsio.run_path(run_dir))
    if not path.exists():
        return None
    return parse_config(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, origin=str(path))


def save_run_config(run_dir: str | fsio.RunPath, config: RunConfig) -> None:
    """Write the resolved config into the run directory."""
    fsio.write_bytes(layout.config_path(fsio.run_path(run_dir)), dump_config(config).encode())


def default_stages(config: RunConfig) -> list[str]:
    """The stages a whole-pipeline run of `config` includes, in order."""
    return [name for name in ORDER if STAGES[name].enabled(config)]


def run(
    run_dir: str | fsio.RunPath,
    config: RunConfig,
    *,
    stages: Sequence[str] | None = None,
    recompute_from: str | None = None,
    executor: str = "local",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Run `stages` (default: every stage the config enables) in pipeline order, resuming completed work;
    returns each stage's funnel.

    `recompute_from` deletes that stage and every later one first (the CLI's --from). `run_dir` is a
    local path or any fsspec URL (`s3://bucket/run`). Every refusal comes before anything is written.
    """
    run_dir = fsio.run_path(run_dir)
    if stages is None:
        stages = default_stages(config)
    unknown = [s for s in [*stages, *([recompute_from] if recompute_from else [])] if s not in STAGES]
    if unknown:
        raise UserError(f"unknown stage {unknown[0]!r}; valid: {', '.join(ORDER)}")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory: pass a folder to --run")
    reset = ORDER[ORDER.index(recompute_from) :] if recompute_from else []
    planned = {name: STAGES[name](run_dir, config) for name in ORDER if name in stages}
    # Refuse before anything is deleted or the saved config replaced.
    unchecked = []
    for name, stage in planned.items():
        for needed in stage.upstream:
            if needed in planned:
                continue
            if needed in reset:
                raise UserError(
                    f"--from {recompute_from} would delete '{needed}', which '{name}' needs; use "
                    f"--from {name}, or recompute the chain with "
                    f"`synthvlm run RECIPE --run {run_dir} --from {recompute_from}`"
                )
            if not is_complete(run_dir, needed):
                raise needs_first(run_dir, name, needed)
        if name not in reset and stage.layout.fingerprint.exists():
            check_fingerprint(stage, record=False)
        elif not any(needed in planned for needed in stage.upstream):
            unchecked.append(stage)
    # Every model, input, destination and extra the stages with work left will use, in one error.
    working = [name for name in planned if name in reset or not is_complete(run_dir, name)]
    report = preflight(config, run_dir=run_dir, stages=working, executor=executor)
    if report.problems:
        raise UserError(report.message())
    for stage in unchecked:
        stage.settings()  # a bad input or setting is refused now, not after earlier stages ran
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):  # a second driver on this run refuses, naming this one
        reset_stages(run_dir, reset)
        save_run_config(run_dir, config)
        runner = make_executor(executor, config=config, progress=progress)
        return {name: run_stage(stage, runner) for name, stage in planned.items()}


def status(run_dir: str | fsio.RunPath) -> dict[str, Any]:
    """`{"stages": {name: {"in", "kept", "dropped", ...}}}` for every stage that has started."""
    run_dir = fsio.run_path(run_dir)
    report = run_status(run_dir)
    config = load_run_config(run_dir)
    if config is not None and layout.StageDir(run_dir, "generate").shards():
        report["generators"] = by_generator(run_dir, config)
    return report


def licence_warnings(run_dir: str | fsio.RunPath) -> list[str]:
    """A sentence per generator of the run's selection whose licence forbids or limits commercial use."""
    run_dir = fsio.run_path(run_dir)
    config = load_run_config(run_dir)
    if config is None or not is_complete(run_dir, "select"):
        return []
    records = run_status(run_dir)["stages"]["select"]["kept"]
    return card.licence_warnings(card.run_facts(run_dir, config.resolved(), records=records))
