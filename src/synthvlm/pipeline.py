"""The Python API: open a run, run stages (resuming), read its funnel. The CLI only wraps these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from synthvlm.config import RunConfig, dump_config, parse_config
from synthvlm.core import fsio
from synthvlm.core.driver import check_fingerprint, funnel, is_complete, needs_first, reset_stages, run_stage
from synthvlm.core.errors import UserError
from synthvlm.executors import make_executor
from synthvlm.stages import ORDER, STAGES

CONFIG_FILE = "config.yaml"


def load_run_config(run_dir: str | fsio.RunPath) -> RunConfig | None:
    """The resolved config saved in a run directory, or None for a new run."""
    path = fsio.run_path(run_dir) / CONFIG_FILE
    if not path.exists():
        return None
    return parse_config(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, origin=str(path))


def save_run_config(run_dir: str | fsio.RunPath, config: RunConfig) -> None:
    """Write the resolved config into the run directory."""
    fsio.write_bytes(fsio.run_path(run_dir) / CONFIG_FILE, dump_config(config).encode())


def run(
    run_dir: str | fsio.RunPath,
    config: RunConfig,
    *,
    stages: Sequence[str] = tuple(ORDER),
    recompute_from: str | None = None,
    executor: str = "local",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Run `stages` in pipeline order, resuming completed work; returns each stage's funnel.

    `recompute_from` deletes that stage and every later one first (the CLI's --from). `run_dir` is a
    local path or any fsspec URL (`s3://bucket/run`).
    """
    run_dir = fsio.run_path(run_dir)
    unknown = [s for s in [*stages, *([recompute_from] if recompute_from else [])] if s not in STAGES]
    if unknown:
        raise UserError(f"unknown stage {unknown[0]!r}; valid: {', '.join(ORDER)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    reset = ORDER[ORDER.index(recompute_from) :] if recompute_from else []
    # Refuse before anything is deleted or the saved config replaced.
    for name in stages:
        for needed in STAGES[name].upstream:
            if needed in stages:
                continue
            if needed in reset:
                raise UserError(
                    f"--from {recompute_from} would delete '{needed}', which '{name}' needs; use "
                    f"--from {name}, or recompute the chain with "
                    f"`synthvlm run RECIPE --run {run_dir} --from {recompute_from}`"
                )
            if not is_complete(run_dir, needed):
                raise needs_first(run_dir, name, needed)
        if name not in reset and (run_dir / name / "fingerprint.json").exists():
            check_fingerprint(STAGES[name](run_dir, config), record=False)
    reset_stages(run_dir, reset)
    save_run_config(run_dir, config)
    runner = make_executor(executor, config=config, progress=progress)
    results = {}
    for name in ORDER:
        if name in stages:
            results[name] = run_stage(STAGES[name](run_dir, config), runner)
    return results


def status(run_dir: str | fsio.RunPath) -> dict[str, Any]:
    """`{"stages": {name: {"in", "kept", "dropped", ...}}}` for every stage that has started."""
    run_dir = fsio.run_path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} is not a synthvlm run directory (no {CONFIG_FILE})")
    names = ["caption", *ORDER]  # caption is an optional source stage before ingest
    return {"stages": {name: funnel(run_dir, name) for name in names if (run_dir / name).is_dir()}}
