"""Errors a user can fix: the CLI prints their message as one line and exits non-zero, no traceback."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A mistake in input, config or invocation, explained in one sentence."""


class ShardFailedError(RuntimeError):
    """Shards that failed on every attempt; raised so a run never skips one silently."""


_NO_SPACE = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}


@contextmanager
def writing(path: object) -> Iterator[None]:
    """Turns running out of space while writing `path` into a one-line UserError naming the path.

    The OSError of a failed write or flush carries no file name (Python's and pyarrow's alike), so the path
    comes from the caller. What was committed stays; the rerun after space is freed redoes only the rest.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise
        raise UserError(
            f"cannot write {path}: {_NO_SPACE[exc.errno]} ({os.strerror(exc.errno)}); free space there "
            "and rerun the command: committed shards are kept"
        ) from exc


_SEE_ABOVE = "Please check out the root cause in the stacktrace above."  # the CLI prints no stack trace


@contextmanager
def loading_model(name: str) -> Iterator[None]:
    """Turns a model that cannot be loaded — a typo, a repo not in the cache while offline, a gated repo, a
    folder without weights — into a one-line UserError naming it, with the library's reason and its cause."""
    try:
        yield
    except _unusable_files() as exc:  # what from_pretrained raises for files it cannot use
        reason = " ".join(str(exc).replace(_SEE_ABOVE, "").split())
        reason = reason.removeprefix(f"Cannot load model {name}: ")  # diffusers repeats the name
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause).strip():
            reason += f" (cause: {' '.join(str(cause).split())})"
        raise UserError(f"cannot load model {name!r}: {reason}") from exc


def _unusable_files() -> tuple[type[Exception], ...]:
    """What loaders raise for a file they cannot use: OS and value errors, and safetensors' own error for
    a damaged weights file (safetensors is imported only if a model loader already imported it)."""
    import sys

    safetensors = sys.modules.get("safetensors")
    return (OSError, ValueError) + ((safetensors.SafetensorError,) if safetensors is not None else ())
