"""The driver lock: a second driver on one run directory refuses, naming the first; stale locks are taken."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from upath import UPath

from synthvlm.core.errors import UserError
from synthvlm.core.lock import run_lock


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_driver_refuses_naming_the_first(tmp_path: Path):
    with run_lock(tmp_path):
        held = json.loads((tmp_path / "driver.lock").read_text())
        assert (held["host"], held["pid"]) == (socket.gethostname(), os.getpid())
        with pytest.raises(UserError) as info:
            with run_lock(tmp_path):
                pass
        message = str(info.value)
        host = socket.gethostname()
        assert message.startswith(f"{tmp_path} is in use by another synthvlm driver (host {host}, ")
        assert f"pid {os.getpid()}, since " in message
        lock = tmp_path / "driver.lock"
        assert message.endswith(f"; wait for it to finish, or delete {lock} if it is gone")
    assert not (tmp_path / "driver.lock").exists()  # released


def test_a_lock_of_a_dead_process_or_an_expired_lease_is_taken_over(tmp_path: Path):
    lock = tmp_path / "driver.lock"
    dead = {"host": socket.gethostname(), "pid": _dead_pid(), "since": 0, "expires": 1e12}
    lock.write_text(json.dumps(dead))
    with run_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0, "expires": time.time() - 1}))
    with run_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0, "expires": time.time() + 60}))
    with pytest.raises(UserError, match="host elsewhere, pid 1"):
        with run_lock(tmp_path):
            pass
    lock.write_text("not json")  # no holder can be named: nothing holds it
    with run_lock(tmp_path):
        pass
    assert not lock.exists()


def test_remote_run_directories_hold_a_lease():
    run = UPath("memory://synthvlm-lock-test/run")
    run.mkdir(parents=True, exist_ok=True)
    with run_lock(run):
        assert json.loads((run / "driver.lock").read_text())["expires"] > time.time()
        with pytest.raises(UserError, match="in use by another synthvlm driver"):
            with run_lock(run):
                pass
    assert not (run / "driver.lock").exists()


def test_pipeline_run_refuses_while_another_driver_holds_the_run(tmp_path: Path):
    from synthvlm import pipeline
    from synthvlm.config import RunConfig

    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"id": "a", "caption": "a dog on the grass"}\n')
    run = tmp_path / "run"
    config = RunConfig().updated("ingest", inputs=[str(pool)])
    run.mkdir()
    with run_lock(run):
        with pytest.raises(UserError, match="is in use by another synthvlm driver"):
            pipeline.run(run, config, stages=["ingest"], progress=False)
        assert not (run / "ingest").exists() and not (run / "config.yaml").exists()
    assert pipeline.run(run, config, stages=["ingest"], progress=False)["ingest"]["kept"] == 1
    assert not (run / "driver.lock").exists()


def test_a_full_disk_while_taking_the_lock_names_it_and_leaves_no_lock(tmp_path, monkeypatch):
    import errno

    from synthvlm.core import lock

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lock.json, "dump", no_space)
    path = tmp_path / "driver.lock"
    with pytest.raises(UserError) as info:
        with lock.run_lock(tmp_path):
            pass
    assert str(info.value) == (
        f"cannot write {path}: the disk is full (No space left on device); free space there and rerun the "
        "command: committed shards are kept"
    )
    assert not path.exists()
