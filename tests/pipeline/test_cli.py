"""CLI contracts: `status --json` shape, one-line user errors, the real Flickr8k pool accounted for."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.pipeline.helpers import cli

REPO = Path(__file__).resolve().parents[2]


def test_flickr8k_ingest_curate_status_accounts_for_every_caption(tmp_path, shared_data):
    run = tmp_path / "run"
    assert (
        cli(
            "ingest", str(shared_data / "flickr8k" / "Flickr8k.token.txt"), "--run", str(run), "-q"
        ).returncode
        == 0
    )
    assert cli("curate", "--run", str(run), "-q").returncode == 0
    stages = json.loads(cli("status", str(run), "--json").stdout)["stages"]
    assert stages["ingest"]["in"] == 40_460
    assert stages["ingest"]["kept"] == 40_460
    assert stages["curate"]["in"] == 40_460
    assert stages["curate"]["dropped"]["special_characters_filter"] == 1442
    assert stages["curate"]["dropped"]["character_repetition_filter"] == 319
    assert stages["curate"]["dropped"]["flagged_words_filter"] == 15
    assert stages["curate"]["dropped"]["alphanumeric_filter"] == 1
    rules_kept = 40_460 - 1442 - 319 - 15 - 1
    assert stages["curate"]["kept"] + stages["curate"]["dropped"]["duplicate_text"] == rules_kept
    for f in stages.values():
        assert f["in"] == f["kept"] + sum(f["dropped"].values())


def test_status_json_shape(tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_bytes(
        b"A dog on a beach.\n\n   \nA cat \x00 on a mat.\n"
        b"A red car parked on the street.\n\xff\xfe bad bytes\n"
    )
    run = tmp_path / "run"
    assert cli("ingest", str(pool), "--run", str(run), "-q").returncode == 0
    report = json.loads(cli("status", str(run), "--json").stdout)
    assert list(report) == ["stages"]
    ingest = report["stages"]["ingest"]
    assert (ingest["in"], ingest["kept"]) == (6, 2)
    assert ingest["dropped"] == {"bad_utf8": 1, "control_chars": 1, "empty_caption": 2}


def test_user_errors_are_one_line_without_traceback(tmp_path):
    missing = cli("ingest", str(tmp_path / "nope.jsonl"), "--run", str(tmp_path / "r"))
    assert missing.returncode == 2
    assert (
        missing.stderr.count("\n") == 1
        and "nope.jsonl" in missing.stderr
        and "Traceback" not in missing.stderr
    )

    broken = tmp_path / "broken.json"
    broken.write_text("this is not json at all")
    bad = cli("ingest", str(broken), "--run", str(tmp_path / "r2"), "--format", "json")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1 and "broken.json" in bad.stderr

    skipped = cli(
        "ingest", str(broken), "--run", str(tmp_path / "r3"), "--format", "json", "--skip-bad-files", "-q"
    )
    assert skipped.returncode == 0
    stages = json.loads(cli("status", str(tmp_path / "r3"), "--json").stdout)["stages"]
    assert stages["ingest"]["dropped"] == {"unreadable_file": 1}

    config = tmp_path / "bad.yaml"
    config.write_text("generate:\n  preset: nonsense\n")
    result = cli("run", str(config), "--run", str(tmp_path / "r4"))
    assert result.returncode == 2
    assert (
        "invalid config: generate" in result.stderr and "unknown generate preset 'nonsense'" in result.stderr
    )

    early = cli("generate", "--run", str(tmp_path / "r3"))
    assert early.returncode == 2 and "needs 'curate' first" in early.stderr

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    blocked = cli("demo", "--out", str(a_file), "-q")
    assert (blocked.returncode, blocked.stderr) == (2, f"error: Not a directory: {a_file / 'run'}\n")


def test_models_that_cannot_load_or_run_are_one_line_errors(tmp_path):
    captions = tmp_path / "c.jsonl"
    captions.write_text('{"caption": "a red bus parked on a quiet street"}\n')

    def run(name: str, generate: str) -> subprocess.CompletedProcess[str]:
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"ingest: {{inputs: [{captions}]}}\ncurate: {{recipe: none, dedup: false}}\n"
            f"generate: {{{generate}}}\n"
        )
        return cli("run", str(config), "--run", str(tmp_path / name), "-q")

    missing = run("missing", "preset: sdxl-base, model: synthvlm-tests/no-such-model, device: cpu")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    last = missing.stderr.splitlines()[-1]  # after diffusers' own log line about the unreachable hub
    assert last.startswith("error: cannot load model 'synthvlm-tests/no-such-model': the model is not fully")
    assert last.endswith("please unset the `HF_HUB_OFFLINE` environment variable.)")  # the cause

    fp8 = run("fp8", "preset: tiny, quantize: fp8, device: cpu")
    assert fp8.returncode == 2 and fp8.stderr == (
        "error: generate.quantize: fp8 needs a CUDA GPU of compute capability 8.9 or newer (H100, L40S, "
        "RTX 4090); this worker runs on cpu\n"
    )


def test_version():
    from importlib.metadata import version

    result = cli("--version")
    assert (result.returncode, result.stdout) == (0, f"synthvlm {version('synthvlm')}\n")


def test_invalid_option_values_are_one_line_errors(tmp_path):
    captions = tmp_path / "c.jsonl"
    captions.write_text('{"caption": "a red bus parked on a quiet street"}\n')
    run = str(tmp_path / "r")
    cases = {
        ("ingest", str(captions), "--run", run, "--shard-rows", "0"): "ingest.shard_rows: Input should be "
        "greater than 0",
    }
    for args, message in cases.items():
        result = cli(*args)
        assert (result.returncode, result.stderr) == (2, f"error: command line: invalid config: {message}\n")
    assert not (tmp_path / "r").exists()  # refused before the run directory was made

    assert cli("ingest", str(captions), "--run", run, "-q").returncode == 0
    cases = {
        (
            "generate",
            "--run",
            run,
            "--batch-size",
            "0",
        ): "generate.batch_size: Input should be greater than 0",
        ("select", "--run", run, "--top-k", "5", "--fraction", "0.5"): "select: Value error, select takes "
        "one of top_k, fraction, threshold; got ['top_k', 'fraction']",
        ("export", "--run", run, "--format", "bogus"): "export.formats.0: Input should be 'llava', "
        "'webdataset' or 'parquet'",
    }
    for args, message in cases.items():
        result = cli(*args)
        assert (result.returncode, result.stderr) == (2, f"error: command line: invalid config: {message}\n")

    recipe = str(REPO / "configs" / "demo.yaml")
    no_curate = cli("plan", recipe, "--gpus", "1", "--run", run)
    assert (no_curate.returncode, no_curate.stderr) == (
        2,
        f"error: {run} has no finished curate stage to count captions from; pass --captions N\n",
    )
    negative = cli("plan", recipe, "--gpus", "1", "--captions", "5", "--seconds-per-image", "-1")
    assert (negative.returncode, negative.stderr) == (
        2,
        "error: the per-image cost must be positive, got -1.0 s\n",
    )


def test_skipped_files_keep_why_in_the_rejected_table(tmp_path):
    import pyarrow.parquet as pq

    odd = tmp_path / "captions.yaml"
    odd.write_text("- a cat\n")
    good = tmp_path / "c.jsonl"
    good.write_text('{"caption": "a red bus"}\n')
    run = tmp_path / "r"
    result = cli("ingest", str(odd), str(good), "--run", str(run), "--skip-bad-files", "-q")
    assert result.returncode == 0, result.stderr
    rejected = pq.read_table(run / "ingest" / "rejected").to_pylist()
    assert [(r["reason"], r["detail"]) for r in rejected] == [
        (
            "unreadable_file",
            f"{odd}: unknown file extension '.yaml'; "
            "known: .csv, .json, .jsonl, .ndjson, .parquet, .tsv, .txt",
        )
    ]


def test_every_option_has_help():
    import typer

    from synthvlm.cli import app

    commands = typer.main.get_command(app).commands
    assert [(name, p.name) for name, sub in commands.items() for p in sub.params if not p.help] == []
    assert len(commands) == 16
