"""Shared test helpers: tree comparison, the CLI in this process or as a real one, and killing a CLI
subprocess at a chosen point."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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


@contextlib.contextmanager
def _invocation(args: list[str], cwd: Path | None) -> Iterator[None]:
    argv, here = sys.argv, os.getcwd()
    sys.argv = ["synthvlm", *args]
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        sys.argv = argv
        os.chdir(here)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `synthvlm ARGS` in this process, as the console script does (`synthvlm.cli.main`): its exit
    code, stdout and stderr. Loaded models stay cached between calls, so no call pays for imports and
    loads again; what needs a real process (signals, a killed process, lock ownership, a library's own
    stderr handlers) uses `cli_process`."""
    from synthvlm.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with _invocation(list(args), cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(["synthvlm", *args], code, stdout.getvalue(), stderr.getvalue())


def cli_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m synthvlm ARGS` as a process of its own, to completion."""
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


MIXED_GENERATORS = ["tiny", "tiny-flux1", "tiny-sana-sprint"]
"""The small mixed pool the tests run: three families, equal shares."""


def mixed_recipe(folder: Path, **ray: object) -> Path:
    """A small mixed-pool recipe (12 demo captions x 3 candidates over `MIXED_GENERATORS`) written to
    `folder`; `ray` fills its ray section."""
    import yaml

    captions = Path(__file__).resolve().parents[2] / "src" / "synthvlm" / "data" / "demo_captions.jsonl"
    recipe = {
        "seed": 3,
        "ingest": {"inputs": [str(captions)], "shard_rows": 20, "limit": 12},
        "curate": {"recipe": "synthvlm"},
        "generate": {
            "candidates_per_caption": 3,
            "images_per_shard": 6,
            "generators": [{"preset": p, "batch_size": 2} for p in MIXED_GENERATORS],
        },
        "score": {"clip_model": "builtin:tiny-clip", "batch_size": 8},
        "select": {"top_k": 6},
        "export": {"formats": ["parquet"], "rows_per_shard": 4},
        **({"ray": ray} if ray else {}),
    }
    path = folder / "mixed.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
