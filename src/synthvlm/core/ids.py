"""Stable caption ids: safe as file names and WebDataset keys, derived from the source id or the caption."""

from __future__ import annotations

import hashlib
import re

MAX_ID_CHARS = 100
"""Longest id; ids name files and WebDataset keys, so they stay short."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _digest(text: str) -> str:
    # surrogatepass: a str may hold lone surrogates; hashing must still be defined for it.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def content_id(caption: str) -> str:
    """Id of a caption whose source gives none: the same caption text always gets the same id."""
    return "h" + _digest(caption)


def safe_id(raw: str) -> str:
    """Map a source id onto `[A-Za-z0-9_-]{1,100}` so it can name files and keys; long ids keep a hash."""
    text = _UNSAFE.sub("_", raw)
    if not text:
        return content_id(raw)
    if len(text) > MAX_ID_CHARS:
        return text[:83] + "-" + _digest(raw)
    return text


class IdAssigner:
    """Give every caption of a pool a unique id, in pool order, so reruns give the same ids."""

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._next_dup: dict[str, int] = {}
        self.duplicates = 0

    def assign(self, *, source_id: str | None, caption: str) -> str:
        """Id for the next caption: its safe source id or content id, made unique with `-dup<N>`."""
        base = safe_id(source_id) if source_id is not None else content_id(caption)
        if base not in self._taken:
            self._taken.add(base)
            return base
        self.duplicates += 1
        number = self._next_dup.get(base, 2)
        while True:
            suffix = f"-dup{number}"
            candidate = base[: MAX_ID_CHARS - len(suffix)] + suffix
            number += 1
            if candidate not in self._taken:
                break
        self._next_dup[base] = number
        self._taken.add(candidate)
        return candidate
