"""The driver: runs a stage's pending tasks phase by phase, records completions, keeps the funnel.

Every executor calls `execute_task`, so outputs are identical whoever runs them. A task with a completion
record never runs again; the record is written last, after the task's outputs are in place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from synthvlm.core import checkpoint, fsio, interrupt, layout
from synthvlm.core.errors import UserError
from synthvlm.core.progress import task_progress
from synthvlm.core.stage import Executor, Stage, Task, TaskStats


def fingerprint(stage: Stage) -> dict[str, Any]:
    """The stage's resolved settings plus a digest of each upstream stage's fingerprint."""
    upstream = {}
    for name in stage.upstream:
        path = stage.upstream_dir(name).fingerprint
        upstream[name] = _digest(fsio.read_json(path)) if path.exists() else None
    return {"stage": stage.name, "settings": stage.settings(), "upstream": upstream}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def execute_task(stage: Stage, task: Task) -> TaskStats | None:
    """Run one task unless it is already complete, then record its completion. Returns None if skipped.

    This is the whole of what a worker does.
    """
    if stage.layout.done(task.name).exists():
        return None
    with fsio.recording_writes() as written:
        stats = stage.run_task(task)
    commit(stage, task, stats, written)
    interrupt.checkpoint()
    return stats


def commit(stage: Stage, task: Task, stats: TaskStats, written: fsio.Written) -> None:
    """Record a task as complete, with the size and sha256 of every file it wrote (what `verify` checks);
    its outputs must already be in place."""
    dropped = sum(stats.dropped.values())
    assert stats.n_in == stats.kept + dropped, f"{stage.name} {task.name}: in != kept + dropped ({stats})"
    root = fsio.absolute(stage.run_dir).rstrip("/") + "/"
    parts = fsio.absolute(stage.layout.parts_dir(task.name)).removeprefix(root) + "/"
    files = {
        rel: {"bytes": size, "sha256": digest}
        for rel, (size, digest) in sorted((p.removeprefix(root), v) for p, v in written.items())
        if not rel.startswith(parts)  # the task's checkpoints, deleted below
    }
    fsio.write_json(stage.layout.done(task.name), {**stats.to_json(), "files": files})
    fsio.remove_tree(stage.layout.parts_dir(task.name))


def completed(stage: Stage, phase: str) -> set[int]:
    """Indices of the completed tasks of a phase."""
    return {layout.task_index(p.stem) for p in stage.layout.done_records(phase)}


def has_work(run_dir: fsio.RunPath, name: str) -> bool:
    """Whether any task of the stage has been committed."""
    return bool(layout.StageDir(run_dir, name).done_records())


def is_complete(run_dir: fsio.RunPath, name: str) -> bool:
    return layout.StageDir(run_dir, name).complete.exists()


def needs_first(run_dir: fsio.RunPath, name: str, needed: str) -> UserError:
    """The error for running a stage before a stage it reads is complete."""
    return UserError(f"stage '{name}' needs '{needed}' first: run `synthvlm {needed} --run {run_dir}`")


def check_fingerprint(stage: Stage, *, record: bool = True) -> None:
    """Refuse to continue a stage whose existing outputs were made with another config.

    With `record`, the current fingerprint is then written for the outputs about to be made.
    """
    path = stage.layout.fingerprint
    current = fingerprint(stage)
    if path.exists():
        previous = fsio.read_json(path)
        if previous == current:
            return
        if has_work(stage.run_dir, stage.name):
            changed = sorted({_config_key(stage.name, key) for key in _changed_keys(previous, current)})
            raise UserError(
                f"stage '{stage.name}' in {stage.run_dir} was run with a different config "
                f"(changed: {', '.join(changed)}); rerun with --from {stage.name} to recompute it "
                "and everything after it"
            )
    if record:
        fsio.write_json(path, current)


_SETTINGS_FROM = {
    # Fingerprint settings computed from a config key rather than copied from it.
    "ingest": {"files": "ingest.inputs"},
    "caption": {"files": "caption.inputs"},
    "generate": {"seed": "seed"},
    "curate": {"filters": "curate.recipe/curate.filters"},
}
"""Per stage: the config key a user edits when the fingerprint's `settings.<key>` changed."""
_SECTIONS = frozenset({"ingest", "curate", "generate", "score", "select", "export", "caption"})
"""Stages whose other settings are their config section's keys."""


def _config_key(stage: str, key: str) -> str:
    """The config key behind a changed fingerprint key (`settings.steps` of generate -> `generate.steps`), so
    a refusal names what the user wrote; keys of stages without their own config section stay as they are."""
    head, _, rest = key.partition(".")
    if head == "upstream":
        return f"upstream stage {rest}"
    if head != "settings" or stage not in _SECTIONS:
        return key
    parts = rest.split(".")
    if parts[0] in _SETTINGS_FROM.get(stage, {}):
        return _SETTINGS_FROM[stage][parts[0]]
    if stage == "curate" and parts[-1] == "template_sha256":  # the judge's prompt file's content
        return "curate.judge.template"
    if stage == "curate" and len(parts) > 1 and parts[1] == "sha256":  # the evaluation files' content
        return "curate.decontamination.eval_files"
    return f"{stage}.{rest}"


def _changed_keys(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _changed_keys(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip(".") or "(all)"


def run_stage(stage: Stage, executor: Executor) -> dict[str, Any]:
    """Run every pending task of a stage, phase by phase; return its funnel. A finished stage does no work."""
    for name in stage.upstream:
        if not is_complete(stage.run_dir, name):
            raise needs_first(stage.run_dir, stage.name, name)
    check_fingerprint(stage)
    out = stage.layout
    fsio.write_json(out.phases, stage.phases())
    external = stage.external_outputs()
    fsio.write_json(out.external_outputs, [fsio.absolute(p) for p in external])
    if not has_work(stage.run_dir, stage.name):  # a fresh start: nothing outside is ours to keep
        for path in external:
            fsio.remove_tree(path)
    fsio.remove_stale_temps(out.root)  # left by a killed worker; never part of any output
    checkpoint.remove_finished(out)
    if out.complete.exists():
        return funnel(stage.run_dir, stage.name)
    for phase in stage.phases():
        if phase in stage.sequential_phases:
            done = completed(stage, phase)
            count = 0
            # The phase runs here, not on the executor, with the same progress; its shard count is known
            # only at its end, so it shows the shards reached (done before included) and no ETA. Whether
            # progress is shown is the executor's setting (`make_executor(progress=...)`).
            with task_progress(
                stage.name, phase, total=None, unit=stage.unit, enabled=executor.progress
            ) as shard_done:
                stream = stage.run_sequential(phase, done)
                while True:
                    with fsio.recording_writes() as written:  # a task's files are written as it is yielded
                        item = next(stream, None)
                    if item is None:
                        break
                    task, stats = item
                    count += 1
                    if stats is not None:
                        commit(stage, task, stats, written)
                    shard_done()
            fsio.write_json(out.plan(phase), {"tasks": count})
            continue
        tasks = stage.tasks(phase)
        fsio.write_json(out.plan(phase), {"tasks": len(tasks)})
        done = completed(stage, phase)
        executor.map(stage, [t for t in tasks if t.index not in done])
        missing = {t.index for t in tasks} - completed(stage, phase)
        if missing:
            raise RuntimeError(f"{stage.name}/{phase}: tasks {sorted(missing)[:10]} did not complete")
    result = {**funnel(stage.run_dir, stage.name), "complete": True}
    fsio.write_json(out.complete, result)
    return result


def reset_stages(run_dir: fsio.RunPath, names: Sequence[str]) -> None:
    """Delete the outputs of these stages so they recompute, including those outside the run."""
    for name in names:
        folder = layout.StageDir(run_dir, name)
        if folder.external_outputs.exists():
            for url in fsio.read_json(folder.external_outputs):
                fsio.remove_tree(fsio.run_path(url))
        fsio.remove_tree(folder.root)


def funnel(run_dir: fsio.RunPath, name: str) -> dict[str, Any]:
    """A stage's accounting from its completion records: in, kept, dropped by reason, progress."""
    folder = layout.StageDir(run_dir, name)
    plans = {p.stem: fsio.read_json(p)["tasks"] for p in folder.plans()}
    records: dict[str, list[dict[str, Any]]] = {}
    for path in folder.done_records():
        records.setdefault(layout.task_phase(path.stem), []).append(fsio.read_json(path))
    phase_order = fsio.read_json(folder.phases) if folder.phases.exists() else list(records)
    dropped: dict[str, int] = {}
    extra: dict[str, float] = {}
    for recs in records.values():
        for rec in recs:
            for reason, n in rec["dropped"].items():
                dropped[reason] = dropped.get(reason, 0) + n
            for key, value in rec["extra"].items():
                extra[key] = extra.get(key, 0) + value
    present = [p for p in phase_order if p in records]
    n_in = sum(r["in"] for r in records[present[0]]) if present else 0
    kept = sum(r["kept"] for r in records[present[-1]]) if present else 0
    total = sum(plans.get(p, 0) for p in phase_order)
    done = sum(len(records.get(p, [])) for p in phase_order)
    return {
        "in": n_in,
        "kept": kept,
        "dropped": dict(sorted(dropped.items())),
        "extra": dict(sorted(extra.items())),
        "tasks_done": done,
        "tasks_total": total,
        "complete": folder.complete.exists(),
    }


def run_status(run_dir: fsio.RunPath) -> dict[str, Any]:
    """`{"stages": {name: funnel}}` for every stage of the run that has started, in pipeline order."""
    if not layout.is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a synthvlm run directory (no {layout.CONFIG})")
    stages = [name for name in layout.STAGE_ORDER if layout.StageDir(run_dir, name).root.is_dir()]
    return {"stages": {name: funnel(run_dir, name) for name in stages}}
