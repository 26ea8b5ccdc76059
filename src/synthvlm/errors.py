"""Errors a user can fix: the CLI prints their message as one line and exits non-zero, no traceback."""


class UserError(Exception):
    """A mistake in input, config or invocation, explained in one sentence."""


class ShardFailedError(RuntimeError):
    """Shards that failed on every attempt; raised so a run never skips one silently."""
