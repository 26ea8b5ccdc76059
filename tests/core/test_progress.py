"""What a run's output shows: progress numbers, the plain lines a log gets (a sequential phase's too), none
with -q, rows relayed from a worker, and no third-party noise (transformers' sequence-length notice and
weight bars) while real warnings and other bars stay."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from synthvlm import pipeline
from synthvlm.config import RunConfig
from synthvlm.core import progress
from synthvlm.core.errors import UserError
from synthvlm.core.progress import (
    PhaseProgress,
    RowRelay,
    interval,
    report_rows,
    rows_to,
    run_progress,
    task_progress,
)
from synthvlm.stages import ingest


class Clock:
    """The time every progress number is computed from, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(0.0)
    monkeypatch.setattr(progress, "_now", clock)
    return clock


def test_the_numbers_of_a_phase_in_a_run(clock):
    with run_progress(["ingest", "curate", "generate"]):
        clock.now = 10.0
        state = PhaseProgress("generate", "generate", total=4, unit="images")
        clock.now = 40.0
        assert state.line() == "generate (stage 3/3): 0/4 shards, 0:00:30 elapsed, run 0:00:40"
        state.shards, state.rows = 1, 300
        assert state.line() == (
            "generate (stage 3/3): 1/4 shards, 300 images, 10.00 images/s, 0:00:30 elapsed, ETA 0:01:30, "
            "run 0:00:40"
        )
        clock.now = 130.0
        state.shards, state.rows = 4, 1200
        assert state.line() == (
            "generate (stage 3/3): 4/4 shards, 1,200 images, 10.00 images/s, 0:02:00 elapsed, run 0:02:10"
        )


def test_a_single_stage_shows_no_stage_number_nor_run_time(clock):
    with run_progress(["curate"]):
        state = PhaseProgress("curate", "filter", total=2, unit="rows")
        clock.now = 5.0
        state.shards = 1
        assert state.line() == "curate/filter: 1/2 shards, 0:00:05 elapsed, ETA 0:00:05"


def test_a_phase_of_unknown_length_shows_the_shards_reached_and_no_eta(clock):
    state = PhaseProgress("ingest", "read", total=None, unit="captions")
    state.shards, state.rows = 1, 5
    assert state.line() == "ingest/read: 1 shard, 5 captions, 0:00:00 elapsed"  # no rate at 0 s
    clock.now = 4.0
    state.shards, state.rows = 3, 2500
    assert state.line() == "ingest/read: 3 shards, 2,500 captions, 625.00 captions/s, 0:00:04 elapsed"


def test_without_a_terminal_a_line_every_interval_and_one_at_the_end(clock, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", "0.01")
    with run_progress(["ingest", "score"]):
        clock.now = 3.0
        with task_progress("score", "score", total=2, unit="images") as shard_done:
            deadline = time.monotonic() + 10
            seen = ""
            while "\n" not in seen and time.monotonic() < deadline:  # the first periodic line
                time.sleep(0.01)
                seen += capsys.readouterr().out
            clock.now = 63.0
            report_rows(8)
            shard_done()
            shard_done()
    lines = (seen + capsys.readouterr().out).splitlines()
    assert lines[0] == "score (stage 2/2): 0/2 shards, 0:00:00 elapsed, run 0:00:03"
    assert lines[-1] == "score (stage 2/2): 2/2 shards, 8 images, 0.13 images/s, 0:01:00 elapsed, run 0:01:03"
    assert all(line.startswith("score (stage 2/2): ") for line in lines)


def test_ingest_prints_its_line_every_interval_while_it_reads(clock, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", "0.01")
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"caption": f"caption {i}"}) + "\n" for i in range(2500)))
    config = RunConfig().updated("ingest", inputs=[str(pool)], shard_rows=1000)
    midway = "ingest/read: 2 shards, 2,100 captions, 210.00 captions/s, 0:00:10 elapsed\n"
    seen = ""
    real = ingest.read

    def read_then_wait(path, **kwargs):
        nonlocal seen
        for n, record in enumerate(real(path, **kwargs), 1):
            yield record
            if n == 2100:  # two shards committed, the third being read: the periodic line shows it
                clock.now = 10.0
                deadline = time.monotonic() + 10
                while midway not in seen and time.monotonic() < deadline:
                    time.sleep(0.01)
                    seen += capsys.readouterr().out
                clock.now = 20.0

    monkeypatch.setattr(ingest, "read", read_then_wait)
    result = pipeline.run(tmp_path / "run", config, stages=["ingest"])
    assert (result["ingest"]["in"], result["ingest"]["tasks_total"]) == (2500, 3)
    seen += capsys.readouterr().out
    assert midway in seen
    lines = seen.splitlines()
    assert lines[-1] == "ingest/read: 3 shards, 2,500 captions, 125.00 captions/s, 0:00:20 elapsed"
    assert all(line.startswith("ingest/read: ") for line in lines if line)


def test_a_failed_phase_prints_no_final_line(clock, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", "600")
    with pytest.raises(KeyboardInterrupt):
        with task_progress("score", "score", total=2, unit="images") as shard_done:
            shard_done()
            raise KeyboardInterrupt
    assert capsys.readouterr().out == ""


def test_quiet_prints_nothing(clock, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", "0.01")
    with task_progress("score", "score", total=1, unit="images", enabled=False) as shard_done:
        report_rows(3)
        time.sleep(0.05)
        shard_done()
    assert capsys.readouterr().out == ""


def test_a_relay_passes_rows_on_at_most_once_an_interval(clock):
    sent: list[int] = []
    relay = RowRelay(sent.append, every=0.5)
    with rows_to(relay):
        report_rows(3)  # the first at once
        clock.now = 0.2
        report_rows(4)
        report_rows(5)  # within 0.5 s of the last send: held
        assert sent == [3]
        clock.now = 0.7
        report_rows(1)
        clock.now = 0.8
        report_rows(2)  # held: goes with the task's result
    report_rows(100)  # outside: reaches no one
    assert (sent, relay.reported) == ([3, 10], 15)


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("SYNTHVLM_PROGRESS_INTERVAL", raising=False)
    assert interval() == 30.0
    monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", "5")
    assert interval() == 5.0
    for bad in ("abc", "0", "-3", "inf"):
        monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", bad)
        with pytest.raises(UserError) as info:
            interval()
        assert (
            str(info.value) == f"SYNTHVLM_PROGRESS_INTERVAL must be a number of seconds above 0, got {bad!r}"
        )


NOISE = """
import synthvlm
import transformers.core_model_loading as loading
from transformers.utils import logging

assert loading.tqdm is logging.tqdm  # the loaders' own binding is the quiet one
log = logging.get_logger("transformers.tokenization_utils_base")
log.warning("Token indices sequence length is longer than the specified maximum sequence length for this "
            "model (79 > 77). Running this sequence through the model will result in indexing errors")
log.warning("a real warning")
for desc in ("Loading weights", "Writing model shards", "Fetching files"):
    list(logging.tqdm(range(2), desc=desc))
"""


def test_transformers_noise_is_dropped_and_real_warnings_and_bars_stay():
    result = subprocess.run([sys.executable, "-c", NOISE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.replace("\r", "\n").splitlines()
    assert "[transformers] a real warning" in lines
    assert [line for line in lines if line.startswith("Token indices")] == []
    bars = {line.split(":")[0] for line in lines if "%|" in line}
    assert bars == {"Fetching files"}
