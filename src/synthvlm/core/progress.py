"""Progress of a run, for a person at a terminal and for a log file alike.

Each phase shows its shards done of its total, the rows (images, captions) its tasks reported, their rate,
the time elapsed, an ETA from the shard rate, and, within a run of several stages, which stage it is and
the run's elapsed time. On a terminal that is a rich bar; when stdout is not one (nohup, Slurm, `tee`) it is
one plain line every `SYNTHVLM_PROGRESS_INTERVAL` seconds (default 30) and one when the phase ends, so a log
shows how far a long stage is. Display only: nothing here changes what a stage writes.

Rows reach the phase's numbers through `report_rows`, which stage code calls wherever it runs: in the
driver's process directly, from a worker process (Ray) through `rows_to` and a `RowRelay` that the executor
connects to the driver.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from synthvlm.core.errors import UserError

INTERVAL_ENV = "SYNTHVLM_PROGRESS_INTERVAL"
"""Seconds between plain progress lines when stdout is not a terminal."""
DEFAULT_INTERVAL = 30.0

_now = time.monotonic  # one clock for every number shown (tests replace it)


@dataclass(frozen=True)
class _Run:
    stages: tuple[str, ...]
    started: float


_report: ContextVar[Callable[[int], None] | None] = ContextVar("synthvlm_rows", default=None)
_run: ContextVar[_Run | None] = ContextVar("synthvlm_run", default=None)


def report_rows(rows: int) -> None:
    """Called by stage code as rows (images, captions) finish; a no-op when no progress is shown."""
    callback = _report.get()
    if callback is not None:
        callback(rows)


@contextmanager
def rows_to(callback: Callable[[int], None]) -> Iterator[None]:
    """Within it, `report_rows` calls `callback`: how a worker process hands its rows on to the driver."""
    token = _report.set(callback)
    try:
        yield
    finally:
        _report.reset(token)


class RowRelay:
    """Sums the rows reported in a worker and passes them to `send` at most once every `every` seconds (the
    first at once), so carrying them to the driver costs no remote call per batch. Rows held back go with
    the next send, or with the task's result: `reported` is all of them."""

    def __init__(self, send: Callable[[int], None], *, every: float) -> None:
        self.send, self.every = send, every
        self.reported = 0
        self.unsent = 0
        self.sent_at = -math.inf

    def __call__(self, rows: int) -> None:
        self.reported += rows
        self.unsent += rows
        now = _now()
        if self.unsent and now - self.sent_at >= self.every:
            self.send(self.unsent)
            self.unsent, self.sent_at = 0, now


def interval() -> float:
    """Seconds between plain progress lines: `$SYNTHVLM_PROGRESS_INTERVAL`, default 30."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise UserError(f"{INTERVAL_ENV} must be a number of seconds above 0, got {text!r}")
    return value


@contextmanager
def run_progress(stages: Sequence[str]) -> Iterator[None]:
    """Within it, each stage's progress says which of `stages` it is and how long the run has taken."""
    token = _run.set(_Run(tuple(stages), _now()))
    try:
        yield
    finally:
        _run.reset(token)


def _hms(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


class PhaseProgress:
    """What one phase has done so far: the numbers the bar and the plain line both show."""

    def __init__(self, stage: str, phase: str, *, total: int | None, unit: str) -> None:
        self.stage, self.phase, self.total, self.unit = stage, phase, total, unit
        self.shards = 0
        self.rows = 0
        self.started = _now()
        run = _run.get()
        # Only a run of several stages numbers them and shows its own time.
        self.run = run if run is not None and len(run.stages) > 1 and stage in run.stages else None

    def title(self) -> str:
        """`stage/phase`, plus `(stage i/n)` in a run of several stages."""
        title = self.stage if self.phase == self.stage else f"{self.stage}/{self.phase}"
        if self.run is not None:
            title += f" (stage {self.run.stages.index(self.stage) + 1}/{len(self.run.stages)})"
        return title

    def summary(self) -> str:
        """Shards done of the total, rows and their rate (once a task reported some), elapsed, ETA, and the
        run's time in a run of several stages. A phase whose total is not known yet (a sequential phase
        streams its input) shows the shards it has reached and no ETA."""
        now = _now()
        elapsed = now - self.started
        if self.total is None:
            parts = [f"{self.shards} shard" + ("" if self.shards == 1 else "s")]
        else:
            parts = [f"{self.shards}/{self.total} shards"]
        if self.rows:
            parts.append(f"{self.rows:,} {self.unit}")
            if elapsed > 0:  # no rate before any time has passed
                parts.append(f"{self.rows / elapsed:,.2f} {self.unit}/s")
        parts.append(f"{_hms(elapsed)} elapsed")
        if self.total is not None and 0 < self.shards < self.total:
            parts.append(f"ETA {_hms(elapsed / self.shards * (self.total - self.shards))}")
        if self.run is not None:
            parts.append(f"run {_hms(now - self.run.started)}")
        return ", ".join(parts)

    def line(self) -> str:
        """The plain line a log gets."""
        return f"{self.title()}: {self.summary()}"


class _SummaryColumn(ProgressColumn):
    """The phase's numbers, recomputed at every refresh so elapsed time and ETA keep moving."""

    def __init__(self, phase: PhaseProgress) -> None:
        super().__init__()
        self.phase = phase

    def render(self, task: Task) -> Text:
        return Text(self.phase.summary())


@contextmanager
def task_progress(
    stage: str, phase: str, *, total: int | None, unit: str = "rows", enabled: bool = True
) -> Iterator[Callable[[], None]]:
    """Progress over a phase's `total` shards (None: not known until the phase ends); yields a callback
    that marks one shard done. Rows come from `report_rows` within it.

    A rich bar when stdout is a terminal, else a plain line every `interval()` seconds and at the end.
    """
    if not enabled:
        yield lambda: None
        return
    state = PhaseProgress(stage, phase, total=total, unit=unit)

    def rows(n: int) -> None:
        state.rows += n

    with rows_to(rows):
        if sys.stdout.isatty():
            with _bar(state) as shard_done:
                yield shard_done
        else:
            with _lines(state, every=interval()) as shard_done:
                yield shard_done


@contextmanager
def _bar(state: PhaseProgress) -> Iterator[Callable[[], None]]:
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(bar_width=30),
        _SummaryColumn(state),
        console=Console(file=sys.stdout),
    ) as progress:
        bar = progress.add_task(state.title(), total=state.total)

        def shard_done() -> None:
            state.shards += 1
            progress.update(bar, advance=1)

        yield shard_done


@contextmanager
def _lines(state: PhaseProgress, *, every: float) -> Iterator[Callable[[], None]]:
    stream = sys.stdout
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            print(state.line(), file=stream, flush=True)

    ticker = threading.Thread(target=tick, name="synthvlm-progress", daemon=True)
    ticker.start()

    def shard_done() -> None:
        state.shards += 1

    try:
        yield shard_done
    finally:
        stop.set()
        ticker.join()
    print(state.line(), file=stream, flush=True)  # the phase's final numbers (not after a failure)
