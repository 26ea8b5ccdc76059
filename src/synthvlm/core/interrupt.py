"""Graceful stops: SIGTERM (what Kubernetes, Slurm and spot reclaims send) or SIGINT asks the running stage
to stop at its next batch boundary, after that batch is committed; a second signal, or the grace period
running out, stops the process at once.

Model stages commit every batch (`core.checkpoint`), so a graceful stop loses nothing and a hard one loses
at most the batch in flight.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

GRACE_ENV = "SYNTHVLM_STOP_GRACE"
"""Seconds a stopping run may take to reach its next batch boundary (default 30)."""
DEFAULT_GRACE = 30.0

_requested = threading.Event()
_signal: list[int] = []
_handlers: list[Callable[[int, object], None]] = []
"""The stop handler of the `graceful_stop` block in force, if any."""


class StopRequested(Exception):
    """Raised at a batch or task boundary, after its commit, once a stop was asked for."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended."""
        return 128 + self.signum


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Ask the running stage to stop at its next boundary (what the signal handler does)."""
    _signal.append(signum)
    _requested.set()


def checkpoint() -> None:
    """A boundary: everything before it is committed. Raise StopRequested if a stop was asked for."""
    if _requested.is_set():
        raise StopRequested(_signal[0])


def grace_seconds() -> float:
    """The grace period from $SYNTHVLM_STOP_GRACE; a bad value is a user error."""
    from synthvlm.core.errors import UserError

    raw = os.environ.get(GRACE_ENV)
    if raw is None:
        return DEFAULT_GRACE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"${GRACE_ENV} must be a number of seconds above 0, got {raw!r}")
    return value


def reclaim_signals() -> None:
    """Put the stop handler back after a library replaced it (`ray.init` installs its own SIGTERM
    handler in the driver, which aborts the process)."""
    if _handlers and threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, _handlers[-1])


@contextmanager
def graceful_stop(*, grace: float, say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT request a stop at the next boundary; a second signal, or
    `grace` seconds without reaching a boundary, ends the process at once with exit code 128 + signal."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def hard_exit(signum: int, why: str) -> None:
        say(f"{why}; stopped now: the batch in flight is lost, everything committed before it stays")
        sys.stderr.flush()
        os._exit(128 + signum)

    timers: list[threading.Timer] = []

    def handler(signum: int, frame: object) -> None:
        if _requested.is_set():
            hard_exit(signum, f"{signal.Signals(signum).name} again")
        name = signal.Signals(signum).name
        say(f"{name}: stopping after the batch in flight (at most {grace:g} s; send it again to stop now)")
        request_stop(signum)
        timer = threading.Timer(grace, hard_exit, (signum, f"no batch boundary within {grace:g} s"))
        timer.daemon = True
        timer.start()
        timers.append(timer)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    _handlers.append(handler)
    try:
        yield
    finally:
        _handlers.remove(handler)
        for timer in timers:
            timer.cancel()
        for s, h in previous.items():
            signal.signal(s, h)
        _requested.clear()
        _signal.clear()
