"""Progress bars (rich): shards done, and rows per second reported from inside running tasks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_report: ContextVar[Callable[[int], None] | None] = ContextVar("synthvlm_rows", default=None)


def report_rows(rows: int) -> None:
    """Called by stage code as rows (images, captions) finish; a no-op when no bar is shown."""
    callback = _report.get()
    if callback is not None:
        callback(rows)


@contextmanager
def task_progress(
    label: str, *, total: int, unit: str = "rows", enabled: bool = True
) -> Iterator[Callable[[], None]]:
    """A bar over `total` shards; yields a callback that marks one shard done."""
    if not enabled:
        yield lambda: None
        return
    rows_done = 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("shards  {task.fields[rate]}"),
        TimeElapsedColumn(),
    ) as progress:
        bar = progress.add_task(label, total=total, rate="")

        def rows(n: int) -> None:
            nonlocal rows_done
            rows_done += n
            elapsed = progress.tasks[0].elapsed or 1e-9
            progress.update(bar, rate=f"{rows_done:,} {unit}, {rows_done / elapsed:,.2f} {unit}/s")

        token = _report.set(rows)
        try:
            yield lambda: progress.update(bar, advance=1)
        finally:
            _report.reset(token)
