"""One driver per run directory: a lock that names its holder, so a second driver refuses instead of
running the same stages over the first one's shoulder.

The lock is `RUN/driver.lock`: JSON with the holder's host, pid, start time and lease expiry. A lock is
stale, and taken over, when its holder is a process of this host that no longer exists, or when its lease
has expired (a holder on another machine renews it every third of the lease while it runs). On a local
filesystem the lock file is created exclusively, so two drivers racing for it cannot both win; object
stores have no exclusive create, so there the lease is best effort.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from synthvlm.core import fsio, layout
from synthvlm.core.errors import UserError, writing

LEASE_SECONDS = 300.0
"""How long a lock stays valid without renewal: a holder that died on another machine blocks no longer."""


def _holder() -> dict[str, Any]:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": now, "expires": now + LEASE_SECONDS}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale(holder: Any) -> bool:
    if not isinstance(holder, dict):
        return True  # unreadable or foreign content: nothing holds it
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return not _alive(holder["pid"])
    return float(holder.get("expires", 0)) < time.time()


def _read(path: fsio.RunPath) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _refusal(path: fsio.RunPath, holder: dict[str, Any]) -> UserError:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
    return UserError(
        f"{path.parent} is in use by another synthvlm driver (host {holder.get('host')}, pid "
        f"{holder.get('pid')}, since {since}); wait for it to finish, or delete {path} if it is gone"
    )


def _acquire_local(path: fsio.RunPath, holder: dict[str, Any]) -> None:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _read(path)
            if other is None:
                continue  # released between our two looks
            if not _stale(other):
                raise _refusal(path, other) from None
            path.unlink(missing_ok=True)
            continue
        try:
            with writing(path), os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(holder, fh)
        except UserError:
            path.unlink(missing_ok=True)  # half a lock would refuse the rerun
            raise
        return
    raise _refusal(path, _read(path) or {})


@contextmanager
def run_lock(run_dir: fsio.RunPath) -> Iterator[None]:
    """Hold the run directory's driver lock for the duration of the block (the directory must exist)."""
    path = layout.lock_path(run_dir)
    holder = _holder()
    if fsio.is_local(run_dir):
        _acquire_local(path, holder)
    else:
        other = _read(path)
        if other is not None and not _stale(other):
            raise _refusal(path, other)
        fsio.write_json(path, holder)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_SECONDS / 3):
            fsio.write_json(path, {**holder, "expires": time.time() + LEASE_SECONDS})

    thread = threading.Thread(target=renew, name="synthvlm-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if (_read(path) or {}).get("pid") == holder["pid"]:
            if fsio.is_local(run_dir):
                path.unlink(missing_ok=True)
            else:
                path.fs.rm(path.path)
