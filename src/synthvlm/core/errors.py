"""Errors a user can fix: the CLI prints their message as one line and exits non-zero, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A mistake in input, config or invocation, explained in one sentence."""


class ShardFailedError(RuntimeError):
    """Shards that failed on every attempt; raised so a run never skips one silently."""


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
