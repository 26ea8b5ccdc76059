"""Shared test helpers: tree comparison and killing a CLI subprocess at a chosen point."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

IGNORED = {"fingerprint.json", "config.yaml", "complete.json", "external-outputs.json"}  # paths, timings


def tree_digest(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every output file under root (relative path -> digest); skips completion records."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (
            path.is_file()
            and not rel.startswith(skip)
            and "/done/" not in f"/{rel}"
            and "/timing/" not in f"/{rel}"
            and path.name not in IGNORED
        ):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m synthvlm ARGS` to completion."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "synthvlm", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def kill_when(args: list[str], ready: callable, *, timeout: float = 900) -> None:
    """Start `synthvlm ARGS`, SIGKILL it as soon as `ready()` is true (polled every millisecond)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "synthvlm", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(
                    f"process ended before the kill point: {proc.stderr.read().decode()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError("kill point never reached")
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()


def done_count(stage_dir: Path, phase: str) -> int:
    return len(list((stage_dir / "done").glob(f"{phase}-[0-9]*.json")))


def tmp_exists(stage_dir: Path) -> bool:
    return any(stage_dir.rglob(".*.tmp-*")) if stage_dir.exists() else False
