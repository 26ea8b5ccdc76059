"""The Ray executor: model stages on a pool of long-lived actors, light stages as Ray tasks.

Workers call the same `execute_task` as the local executor, so a shard commits the same bytes wherever it
runs. The driver holds only the queue of pending tasks (indices and small payloads) and hands the next one
to whichever worker is free. A task whose worker died or raised goes back on the queue, at most
`max_retries` times; a task that still fails makes the phase raise `ShardFailedError` naming it, after
every other task of the phase has committed. Ray is imported only when a phase runs on it.

The rows a worker's stage reports (`report_rows`) go to a small counter actor, summed in the worker and sent
at most every `STOP_POLL` seconds without waiting for an answer; the driver takes them from the counter
whenever it wakes up, so its progress shows rows and their rate while shards are still running. A finished
task returns all of its rows with its result, so the count of finished shards is exact.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from synthvlm.config import RayConfig, RunConfig
from synthvlm.core import fsio, interrupt
from synthvlm.core.driver import execute_task
from synthvlm.core.errors import ShardFailedError, UserError
from synthvlm.core.needs import Extra, Need
from synthvlm.core.progress import RowRelay, report_rows, rows_to, task_progress
from synthvlm.core.stage import Stage, Task

STOP_POLL = 0.5
"""Seconds between the driver's checks for a requested stop while it waits on the workers."""


def import_ray() -> Any:
    """The `ray` module, or a UserError naming the pip extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError("the Ray executor needs Ray: pip install 'synthvlm[ray]'") from None
    return ray


def _torch_threads() -> int | None:
    """This process's torch intra-op thread count; None where torch is not installed (light stages only)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def _pin_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


class _RowCounter:
    """An actor holding the rows workers report while their tasks run, until the driver takes them."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[tuple[int, str], int]] = {}  # phase -> (task index, attempt) -> rows
        self.changed: dict[int, dict[int, int]] = {}  # phase -> task index -> rows, since the last take

    def add(self, phase: int, task: int, attempt: str, rows: int) -> None:
        attempts = self.rows.setdefault(phase, {})
        attempts[task, attempt] = attempts.get((task, attempt), 0) + rows
        changed = self.changed.setdefault(phase, {})
        changed[task] = max(changed.get(task, 0), attempts[task, attempt])

    def take(self, phase: int) -> dict[int, int]:
        """Rows so far of the phase's tasks that reported since the last take (the furthest attempt's)."""
        return self.changed.pop(phase, {})

    def forget(self, phase: int) -> None:
        self.rows.pop(phase, None)
        self.changed.pop(phase, None)


@dataclass(frozen=True)
class _Rows:
    """Where a worker's tasks report rows: the run's counter, under the key of the phase being run."""

    counter: Any
    phase: int


def _execute(stage: Stage, task: Task, rows: _Rows | None) -> int | None:
    """`execute_task`, with the rows the stage reports relayed to the driver's progress while it runs;
    returns them all, so the driver counts a finished shard exactly without waiting on the counter."""
    if rows is None:
        execute_task(stage, task)
        return None
    attempt = uuid.uuid4().hex
    relay = RowRelay(lambda n: rows.counter.add.remote(rows.phase, task.index, attempt, n), every=STOP_POLL)
    with rows_to(relay):
        execute_task(stage, task)
    return relay.reported


class _Worker:
    """An actor that keeps one stage object, so the models it loads serve every task it is sent."""

    def __init__(self, stage: Stage, threads: int | None, rows: _Rows | None) -> None:
        _pin_threads(threads)
        self.stage = stage
        self.rows = rows

    def run(self, task: Task) -> int | None:
        return _execute(self.stage, task, self.rows)


def _run_light(stage: Stage, task: Task, threads: int | None, rows: _Rows | None) -> int | None:
    _pin_threads(threads)
    return _execute(stage, task, rows)


class _RowPoll:
    """Driver side: brings the phase's rows into its progress, from the counter while tasks run (never
    waiting on it) and from each finished task's result.

    A task retried after its worker died reports the rows the dead one committed again, as every task
    reports its resumed rows: each task counts once, by its furthest attempt.
    """

    def __init__(self, ray: Any, target: _Rows) -> None:
        self.ray, self.target = ray, target
        self.alive = True
        self.credited: dict[int, int] = {}
        self.asked: Any = None
        self.asked_at = -STOP_POLL

    def poll(self) -> None:
        """Count what the last question brought, if it is back; ask again at most every `STOP_POLL` s."""
        if self.asked is not None:
            if not self.ray.wait([self.asked], timeout=0)[0]:
                return
            try:
                for task, rows in self.ray.get(self.asked).items():
                    self.credit(task, rows)
            except self.ray.exceptions.RayError:
                self.alive = False  # the counter is gone (its node was lost): rows come with results only
            self.asked = None
        if self.alive and time.monotonic() - self.asked_at >= STOP_POLL:
            self.asked, self.asked_at = self.target.counter.take.remote(self.target.phase), time.monotonic()

    def credit(self, task: int, rows: int) -> None:
        """Show a task's rows so far, those it showed already excepted."""
        new = rows - self.credited.get(task, 0)
        if new > 0:
            self.credited[task] = rows
            report_rows(new)

    def close(self) -> None:
        """Let the counter drop the phase (not waited on)."""
        if self.alive:
            self.target.counter.forget.remote(self.target.phase)


class RayExecutor:
    """Ships `(stage, task)` pairs to Ray workers; joins `config.address` or starts a local Ray."""

    def __init__(self, *, config: RayConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self._threads: int | None = None
        self._counter: Any = None
        self._phases = 0

    @classmethod
    def needs(cls) -> list[Need]:
        """What running tasks on Ray takes: Ray itself."""
        return [Extra("--executor ray", ("ray",), "pip install 'synthvlm[ray]'")]

    @classmethod
    def from_config(cls, config: RunConfig, *, progress: bool = True) -> RayExecutor:
        """The executor for a run config's `ray` section."""
        return cls(config=config.ray, progress=progress)

    def map(self, stage: Stage, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.config.address)
            interrupt.reclaim_signals()
        if self._threads is None:
            self._threads = self.config.threads or _torch_threads()
        rows = _RowPoll(ray, self._rows(ray)) if self.progress else None
        with task_progress(
            stage.name, tasks[0].phase, total=len(tasks), unit=stage.unit, enabled=self.progress
        ) as shard_done:
            try:
                if stage.uses_model:
                    # Each group (a generator's tasks) gets its own pool of actors, one group after another:
                    # an actor loads one model and serves only tasks that use it.
                    groups: dict[str, list[Task]] = {}
                    for task in tasks:
                        groups.setdefault(task.group, []).append(task)
                    for group in groups.values():
                        self._on_actors(ray, stage, group, shard_done, rows)
                else:
                    self._as_tasks(ray, stage, tasks, shard_done, rows)
            finally:
                if rows is not None:
                    rows.close()

    def _rows(self, ray: Any) -> _Rows:
        """Where this phase's workers report rows: one counter for the executor's life (an actor starts
        once, not per phase), under a key of the phase's own."""
        if self._counter is None:
            # No CPU: it never takes a worker's place. Ray ends it once no handle to it is left.
            self._counter = ray.remote(_RowCounter).options(num_cpus=0, max_restarts=0).remote()
        self._phases += 1
        return _Rows(self._counter, self._phases)

    # -- resources ----------------------------------------------------------------------------------
    def _options(self, ray: Any) -> dict[str, Any]:
        cfg = self.config
        gpus = cfg.num_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        options: dict[str, Any] = {"num_cpus": cfg.num_cpus, "num_gpus": gpus}
        if cfg.memory_gb is not None:
            options["memory"] = int(cfg.memory_gb * 2**30)
        return options

    def _actor_count(self, ray: Any, options: dict[str, Any]) -> int:
        if self.config.actors is not None:
            return self.config.actors
        if options["num_gpus"] > 0:
            return max(1, int(ray.cluster_resources().get("GPU", 0) // options["num_gpus"]))
        return 2

    # -- scheduling ---------------------------------------------------------------------------------
    def _on_actors(
        self, ray: Any, stage: Stage, tasks: Sequence[Task], shard_done: Any, rows: _RowPoll | None
    ) -> None:
        options = self._options(ray)
        worker_cls = ray.remote(_Worker).options(**options, max_restarts=0, max_task_retries=0)
        count = min(self._actor_count(ray, options), len(tasks))
        target = rows.target if rows is not None else None
        live = [worker_cls.remote(stage, self._threads, target) for _ in range(count)]

        def replace(dead: Any) -> Any:
            # An actor Ray reports lost may only be unreachable (ActorUnavailableError: a node that stopped
            # answering): kill it, so it never holds its CPUs or GPU, or a shard, for the rest of the run.
            ray.kill(dead)
            live.remove(dead)
            live.append(worker_cls.remote(stage, self._threads, target))
            return live[-1]

        try:
            # An actor gets tasks once it has started: one Ray cannot place yet (an autoscaling cluster)
            # never holds a task hostage while the others drain the queue.
            self._loop(
                ray,
                stage,
                tasks,
                shard_done,
                rows,
                idle=collections.deque(),
                starting={actor.__ray_ready__.remote(): actor for actor in live},
                submit=lambda actor, task: actor.run.remote(task),
                replace=replace,
                ready=lambda actor: actor.__ray_ready__.remote(),
            )
        finally:
            for actor in live:
                ray.kill(actor)

    def _as_tasks(
        self, ray: Any, stage: Stage, tasks: Sequence[Task], shard_done: Any, rows: _RowPoll | None
    ) -> None:
        options = {**self._options(ray), "num_gpus": 0}
        target = rows.target if rows is not None else None
        remote = ray.remote(_run_light).options(**options, max_retries=0)
        stage_ref = ray.put(stage)
        # Keep the cluster busy without queueing the whole phase on it: the queue stays on the driver.
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // options["num_cpus"]))
        self._loop(
            ray,
            stage,
            tasks,
            shard_done,
            rows,
            idle=collections.deque([None] * min(slots, len(tasks))),
            starting={},
            submit=lambda _, task: remote.remote(stage_ref, task, self._threads, target),
            replace=lambda slot: slot,
            ready=None,
        )

    def _loop(
        self,
        ray: Any,
        stage: Stage,
        tasks: Sequence[Task],
        shard_done: Any,
        rows: _RowPoll | None,
        *,
        idle: collections.deque[Any],
        starting: dict[Any, Any],
        submit: Any,
        replace: Any,
        ready: Any,
    ) -> None:
        """Hand pending tasks to idle workers; requeue a failed task until it runs out of attempts."""
        pending = collections.deque(tasks)
        attempts: collections.Counter[int] = collections.Counter()
        in_flight: dict[Any, tuple[Task, Any]] = {}
        failed: dict[str, str] = {}
        failed_starts = 0
        while pending or in_flight:
            while pending and idle:
                worker, task = idle.popleft(), pending.popleft()
                in_flight[submit(worker, task)] = (task, worker)
            ready_refs, _ = ray.wait([*in_flight, *starting], num_returns=1, timeout=STOP_POLL)
            if rows is not None:
                rows.poll()
            if not ready_refs:
                # A requested stop (SIGTERM, Ctrl-C) ends the phase here: the actors are killed on the way
                # out, each losing at most its batch in flight, since model stages commit every batch.
                interrupt.checkpoint()
                continue
            [ref] = ready_refs
            if ref in starting:
                worker = starting.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    failed_starts += 1
                    if failed_starts > self.config.max_retries:
                        raise RuntimeError(
                            f"{stage.name}: Ray workers fail to start ({_describe(exc)}); "
                            "is this synthvlm version installed on every node?"
                        ) from exc
                    worker = replace(worker)
                    starting[ready(worker)] = worker
                    continue
                idle.append(worker)
                continue
            task, worker = in_flight.pop(ref)
            try:
                reported = ray.get(ref)
            except ray.exceptions.RayError as exc:
                if isinstance(exc, ray.exceptions.RayActorError):
                    worker = replace(worker)  # the actor is gone; its task goes to another one
                    starting[ready(worker)] = worker
                else:
                    idle.append(worker)
                attempts[task.index] += 1
                if attempts[task.index] > self.config.max_retries:
                    failed[task.name] = _describe(exc)
                else:
                    pending.append(task)
                continue
            idle.append(worker)
            if rows is not None and reported is not None:  # None: the shard was done before
                rows.credit(task.index, reported)
            shard_done()
            interrupt.checkpoint()
        # Nothing runs now; temporary files here were left by killed workers and belong to no output.
        fsio.remove_stale_temps(stage.layout.root)
        if failed:
            lines = "; ".join(f"{name}: {error}" for name, error in sorted(failed.items()))
            raise ShardFailedError(
                f"{stage.name}: {len(failed)} shard(s) failed after {self.config.max_retries + 1} attempts "
                f"each ({lines}); the other shards are committed, rerun the command to retry the failed ones"
            )


def _describe(exc: Exception) -> str:
    """The original error of a failed task in one line, or what happened to its worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}".rstrip(": ")
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
