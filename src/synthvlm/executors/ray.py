"""The Ray executor: model stages on a pool of long-lived actors, light stages as Ray tasks.

Workers call the same `execute_task` as the local executor, so a shard commits the same bytes wherever it
runs. The driver holds only the queue of pending tasks (indices and small payloads) and hands the next one
to whichever worker is free. A task whose worker died or raised goes back on the queue, at most
`max_retries` times; a task that still fails makes the phase raise `ShardFailedError` naming it, after
every other task of the phase has committed. Ray is imported only when a phase runs on it.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from synthvlm.config import RayConfig, RunConfig
from synthvlm.core import fsio, interrupt
from synthvlm.core.driver import execute_task
from synthvlm.core.errors import ShardFailedError, UserError
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


class _Worker:
    """An actor that keeps one stage object, so the models it loads serve every task it is sent."""

    def __init__(self, stage: Stage, threads: int | None) -> None:
        _pin_threads(threads)
        self.stage = stage

    def run(self, task: Task) -> None:
        execute_task(self.stage, task)


def _run_light(stage: Stage, task: Task, threads: int | None) -> None:
    _pin_threads(threads)
    execute_task(stage, task)


class RayExecutor:
    """Ships `(stage, task)` pairs to Ray workers; joins `config.address` or starts a local Ray."""

    def __init__(self, *, config: RayConfig, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self._threads: int | None = None

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
        from synthvlm.core.progress import task_progress

        if self._threads is None:
            self._threads = self.config.threads or _torch_threads()
        with task_progress(
            stage.name, tasks[0].phase, total=len(tasks), unit=stage.unit, enabled=self.progress
        ) as shard_done:
            if stage.uses_model:
                self._on_actors(ray, stage, tasks, shard_done)
            else:
                self._as_tasks(ray, stage, tasks, shard_done)

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
    def _on_actors(self, ray: Any, stage: Stage, tasks: Sequence[Task], shard_done: Any) -> None:
        options = self._options(ray)
        worker_cls = ray.remote(_Worker).options(**options, max_restarts=0, max_task_retries=0)
        count = min(self._actor_count(ray, options), len(tasks))
        live = [worker_cls.remote(stage, self._threads) for _ in range(count)]

        def replace(dead: Any) -> Any:
            # An actor Ray reports lost may only be unreachable (ActorUnavailableError: a node that stopped
            # answering): kill it, so it never holds its CPUs or GPU, or a shard, for the rest of the run.
            ray.kill(dead)
            live.remove(dead)
            live.append(worker_cls.remote(stage, self._threads))
            return live[-1]

        try:
            # An actor gets tasks once it has started: one Ray cannot place yet (an autoscaling cluster)
            # never holds a task hostage while the others drain the queue.
            self._loop(
                ray,
                stage,
                tasks,
                shard_done,
                idle=collections.deque(),
                starting={actor.__ray_ready__.remote(): actor for actor in live},
                submit=lambda actor, task: actor.run.remote(task),
                replace=replace,
                ready=lambda actor: actor.__ray_ready__.remote(),
            )
        finally:
            for actor in live:
                ray.kill(actor)

    def _as_tasks(self, ray: Any, stage: Stage, tasks: Sequence[Task], shard_done: Any) -> None:
        options = {**self._options(ray), "num_gpus": 0}
        remote = ray.remote(_run_light).options(**options, max_retries=0)
        stage_ref = ray.put(stage)
        # Keep the cluster busy without queueing the whole phase on it: the queue stays on the driver.
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // options["num_cpus"]))
        self._loop(
            ray,
            stage,
            tasks,
            shard_done,
            idle=collections.deque([None] * min(slots, len(tasks))),
            starting={},
            submit=lambda _, task: remote.remote(stage_ref, task, self._threads),
            replace=lambda slot: slot,
            ready=None,
        )

    def _loop(
        self,
        ray: Any,
        stage: Stage,
        tasks: Sequence[Task],
        shard_done: Any,
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
                ray.get(ref)
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
