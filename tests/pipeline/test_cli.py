"""CLI contracts: `status --json` shape, one-line user errors, the real Flickr8k pool accounted for."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from tests.conftest import DEMO
from tests.pipeline.helpers import cli


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
    assert (blocked.returncode, blocked.stderr) == (
        2,
        "error: 2 problem(s) before any work:\n"
        f"  - run directory {a_file / 'run'} cannot be created: {a_file} is a file: choose a run directory "
        "you can write to\n"
        f"  - export.out {a_file / 'export'} cannot be created: {a_file} is a file: set export.out (or "
        "`synthvlm export --out`) to a folder you can write to\n",
    )


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

    from huggingface_hub.constants import HF_HUB_CACHE

    # Caught before any work: the preflight names every model it cannot find.
    missing = run("missing", "preset: sdxl-base, model: synthvlm-tests/no-such-model, device: cpu")
    assert (missing.returncode, missing.stderr) == (
        2,
        "error: 2 problem(s) before any work:\n"
        "  - generate.model 'synthvlm-tests/no-such-model' is not a local folder nor in the Hugging Face "
        f"cache ({HF_HUB_CACHE}), and offline mode is on: `hf download synthvlm-tests/no-such-model`, or "
        "`generate.model: builtin:tiny-sdxl` for an offline try\n"
        "  - score.clip_model 'openai/clip-vit-base-patch32' is not a local folder nor in the Hugging Face "
        f"cache ({HF_HUB_CACHE}), and offline mode is on: `hf download openai/clip-vit-base-patch32`, or "
        "`score.clip_model: builtin:tiny-clip` for an offline try\n",
    )
    assert not (tmp_path / "missing").exists()

    # A folder whose files are all there but whose weights are damaged fails when it loads: one line.
    from synthvlm.models.builtin.clip import build_tiny_clip

    broken = build_tiny_clip(tmp_path / "broken-clip")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    config = tmp_path / "broken.yaml"
    config.write_text(
        f"ingest: {{inputs: [{captions}]}}\ncurate: {{recipe: none, dedup: false}}\n"
        f"generate: {{preset: tiny}}\nscore: {{clip_model: {broken}}}\n"
    )
    failed = cli("run", str(config), "--run", str(tmp_path / "broken"), "-q")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    last = failed.stderr.splitlines()[-1]
    assert last.startswith(f"error: cannot load model '{broken}': "), last


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
        ("select", "--run", run, "--top-k", "5", "--fraction", "0.5"): "select: select takes "
        "one of top_k, fraction, threshold; got ['top_k', 'fraction']",
        ("export", "--run", run, "--format", "bogus"): "export.formats.0: Input should be 'llava', "
        "'webdataset', 'parquet' or 'hf'",
    }
    for args, message in cases.items():
        result = cli(*args)
        assert (result.returncode, result.stderr) == (2, f"error: command line: invalid config: {message}\n")

    recipe = str(DEMO)
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
    assert sorted(commands) == [
        "caption",
        "check",
        "curate",
        "demo",
        "eval",
        "export",
        "generate",
        "ingest",
        "plan",
        "report",
        "run",
        "score",
        "score-dataset",
        "select",
        "status",
        "train",
        "validate",
        "verify",
    ]


# -- in-process: the CLI's messages and behaviour, through `main` (one line, exit code) --------------------

CAPTIONS = [
    "a red bus parked on a quiet street",
    "a dog running on the beach at sunset",
    "two children flying a kite in a green park",
]


def test_long_lines_are_never_wrapped_when_piped(tmp_path):
    """A path longer than the 80 columns of a pipe stays on its line: errors are one line, and the
    `run directory:` line a script greps for keeps its whole path."""
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4) / "captions.jsonl"
    missing = cli("ingest", str(deep), "--run", str(tmp_path / "r"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and str(deep) in missing.stderr

    run = tmp_path / ("a-run-with-a-long-name-" * 4)
    result = cli("run", str(DEMO), "--run", str(run), "--until", "ingest", "--limit", "5", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ingest: in 5, kept 5, dropped none", f"run directory: {run}"]


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `synthvlm ARGS` in this process: (exit code, stdout, stderr)."""
    import pytest

    from synthvlm.cli import main

    monkeypatch.setattr("sys.argv", ["synthvlm", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def _captions(tmp_path: Path, name: str = "c.jsonl", lines: list[str] = CAPTIONS) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"caption": c}) + "\n" for c in lines))
    return str(path)


def _option_line(help_text: str, option: str) -> str:
    [line] = [line for line in help_text.splitlines() if re.match(rf"│ [ *]  {option} ", line)]
    return line


def test_help_shows_every_default_and_flags_take_no_value():
    import typer
    from typer.testing import CliRunner

    from synthvlm.cli import app

    def help_of(*command: str) -> str:
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.stdout

    defaults = {
        ("generate", "--preset"): "(sdxl, or the run's own)",
        ("generate", "--candidates"): "(1, or the run's own)",
        ("generate", "--batch-size"): "(the preset's: 8 for sdxl, or the run's own)",
        ("generate", "--device"): "(auto, or the run's own)",
        ("score", "--clip-model"): "(openai/clip-vit-base-patch32, or the run's own)",
        ("score", "--device"): "(auto, or the run's own)",
        ("curate", "--recipe"): "(synthvlm, or the run's own)",
        ("select", "--top-k"): "(top-k 100000, or the run's own cut)",
        ("ingest", "--format"): "(auto, or the run's own)",
        ("ingest", "--shard-rows"): "(10000, or the run's own)",
        ("generate", "--executor"): "local",
    }
    for (command, option), default in defaults.items():
        assert _option_line(help_of(command), option).rstrip(" │").endswith(f"[default: {default}]")
    for command in ["", *typer.main.get_command(app).commands]:
        assert "<bool>" not in help_of(*([command] if command else []))
    quiet = _option_line(help_of("generate"), "--quiet")  # no value placeholder before the help
    assert re.match(r"│ +--quiet +-q +No progress\. Without a terminal", quiet), quiet


def test_status_takes_the_run_as_an_option_too(tmp_path, monkeypatch, capsys):
    run = str(tmp_path / "run")
    assert _main(monkeypatch, capsys, "ingest", _captions(tmp_path), "--run", run, "-q")[0] == 0
    positional = _main(monkeypatch, capsys, "status", run, "--json")
    assert positional[0] == 0 and json.loads(positional[1])["stages"]["ingest"]["kept"] == 3
    assert _main(monkeypatch, capsys, "status", "--run", run, "--json") == positional
    assert _main(monkeypatch, capsys, "status") == (
        2,
        "",
        "error: which run? pass its directory: `synthvlm status RUN`\n",
    )
    other = str(tmp_path / "other")
    assert _main(monkeypatch, capsys, "status", run, "--run", other) == (
        2,
        "",
        f"error: two runs given ({run} and --run {other}): pass one, `synthvlm status RUN`\n",
    )


def test_a_run_that_is_a_file_is_one_line_for_every_command(tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    refusal = f"error: {a_file} is a file, not a run directory: pass a folder to --run\n"
    commands = [
        ["status", str(a_file)],
        ["status", "--run", str(a_file)],
        ["ingest", _captions(tmp_path), "--run", str(a_file)],
        *([stage, "--run", str(a_file)] for stage in ("curate", "generate", "score", "select", "export")),
        ["plan", str(DEMO), "--gpus", "1", "--run", str(a_file)],
    ]
    for args in commands:
        assert _main(monkeypatch, capsys, *args) == (2, "", refusal), args
    assert _main(monkeypatch, capsys, "validate", str(a_file)) == (
        2,
        "",
        f"error: {a_file} is a file, not an export folder: pass the folder that holds manifest.json "
        "(or the export folder above it)\n",
    )


def test_ctrl_c_finishes_the_task_in_flight_and_prints_the_resume_command(tmp_path, monkeypatch, capsys):
    from synthvlm.core import interrupt
    from synthvlm.executors import local

    run = str(tmp_path / "run")
    captions = _captions(tmp_path)
    ran = []
    real = local.execute_task

    def ctrl_c_during_the_second_task(stage, task):
        if ran:
            os.kill(os.getpid(), signal.SIGINT)  # a real signal, through the handler the CLI installs
        ran.append(task.name)
        return real(stage, task)

    monkeypatch.setattr(local, "execute_task", ctrl_c_during_the_second_task)
    assert _main(monkeypatch, capsys, "ingest", captions, "--run", run, "--shard-rows", "1", "-q")[0] == 0
    ran.clear()
    assert _main(monkeypatch, capsys, "curate", "--run", run, "--from", "curate", "-q") == (
        130,
        "",
        "SIGINT: stopping after the batch in flight (at most 30 s; send it again to stop now)\n"
        f"interrupted: {run} keeps ingest (complete), curate (2/3 shards); "
        f"resume with: synthvlm curate --run {run} -q\n",
    )
    assert ran == ["filter-00000", "filter-00001"]  # the second finished and was committed: nothing lost
    monkeypatch.setattr(local, "execute_task", real)
    assert _main(monkeypatch, capsys, "curate", "--run", run, "-q") == (
        0,
        "curate: in 3, kept 3, dropped none\n",
        "",
    )

    fresh = str(tmp_path / "fresh")

    def sigterm_before_any_work(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        interrupt.checkpoint()

    monkeypatch.setattr("synthvlm.pipeline.run", sigterm_before_any_work)
    monkeypatch.setenv("SYNTHVLM_STOP_GRACE", "5")
    assert _main(monkeypatch, capsys, "ingest", captions, "--run", fresh) == (
        143,
        "",
        "SIGTERM: stopping after the batch in flight (at most 5 s; send it again to stop now)\n"
        f"interrupted: nothing was kept in {fresh} yet; "
        f"resume with: synthvlm ingest {captions} --run {fresh}\n",
    )
    monkeypatch.setenv("SYNTHVLM_STOP_GRACE", "soon")
    assert _main(monkeypatch, capsys, "ingest", captions, "--run", fresh) == (
        2,
        "",
        "error: $SYNTHVLM_STOP_GRACE must be a number of seconds above 0, got 'soon'\n",
    )


def test_progress_lines_without_a_terminal_and_none_with_quiet(tmp_path, monkeypatch, capsys):
    from synthvlm.core import progress

    monkeypatch.setattr(progress, "_now", lambda: 7.0)
    monkeypatch.delenv("SYNTHVLM_PROGRESS_INTERVAL", raising=False)
    run = str(tmp_path / "run")
    assert _main(monkeypatch, capsys, "ingest", _captions(tmp_path), "--run", run) == (
        0,
        # a sequential phase: shards reached so far (its total is known at its end), no rate at 0 s
        "ingest/read: 1 shard, 3 captions, 0:00:00 elapsed\ningest: in 3, kept 3, dropped none\n",
        "",
    )
    assert _main(monkeypatch, capsys, "curate", "--run", run) == (
        0,
        "curate/filter: 1/1 shards, 0:00:00 elapsed\n"
        "curate/dedup-plan: 1/1 shards, 0:00:00 elapsed\n"
        "curate/dedup: 1/1 shards, 0:00:00 elapsed\n"
        "curate: in 3, kept 3, dropped none\n",
        "",
    )
    monkeypatch.setenv("SYNTHVLM_PROGRESS_INTERVAL", "soon")
    assert _main(monkeypatch, capsys, "curate", "--run", run, "--from", "curate") == (
        2,
        "",
        "error: SYNTHVLM_PROGRESS_INTERVAL must be a number of seconds above 0, got 'soon'\n",
    )
    assert _main(monkeypatch, capsys, "curate", "--run", run, "--from", "curate", "-q") == (
        0,
        "curate: in 3, kept 3, dropped none\n",
        "",
    )


def test_refusals_name_the_config_keys(tmp_path, monkeypatch, capsys):
    run = str(tmp_path / "run")

    def refusal(stage: str, changed: str) -> tuple[int, str, str]:
        return (
            2,
            "",
            f"error: stage '{stage}' in {run} was run with a different config (changed: {changed}); rerun "
            f"with --from {stage} to recompute it and everything after it\n",
        )

    assert _main(monkeypatch, capsys, "ingest", _captions(tmp_path), "--run", run, "-q")[0] == 0
    other = _captions(tmp_path, "d.jsonl", CAPTIONS[:2])
    assert _main(monkeypatch, capsys, "ingest", other, "--run", run, "-q") == refusal(
        "ingest", "ingest.inputs"
    )
    assert _main(monkeypatch, capsys, "curate", "--run", run, "-q")[0] == 0
    assert _main(monkeypatch, capsys, "curate", "--run", run, "--recipe", "none", "-q") == refusal(
        "curate", "curate.recipe/curate.filters"
    )


def test_every_fingerprint_key_maps_to_the_config_key_a_user_writes():
    from synthvlm.core.driver import _config_key

    cases = {
        ("ingest", "settings.files"): "ingest.inputs",
        ("ingest", "settings.max_caption_chars"): "ingest.max_caption_chars",
        ("caption", "settings.files"): "caption.inputs",
        ("caption", "settings.max_new_tokens"): "caption.max_new_tokens",
        ("curate", "settings.filters"): "curate.recipe/curate.filters",
        ("curate", "settings.dedup"): "curate.dedup",
        ("curate", "settings.alignment.min_clip"): "curate.alignment.min_clip",
        ("curate", "settings.decontamination.sha256./data/eval.json"): "curate.decontamination.eval_files",
        ("curate", "settings.judge.template_sha256"): "curate.judge.template",
        ("generate", "settings.seed"): "seed",
        ("generate", "settings.steps"): "generate.steps",
        ("score", "settings.ssim_data_range"): "score.ssim_data_range",
        ("select", "settings.top_k"): "select.top_k",
        ("export", "settings.out"): "export.out",
        ("score", "upstream.generate"): "upstream stage generate",
        ("evens", "settings.size"): "settings.size",  # a stage with no config section of its own
    }
    assert {case: _config_key(*case) for case in cases} == cases


def test_run_until_and_limit_try_a_recipe_on_a_sample(tmp_path, monkeypatch, capsys):
    demo = str(DEMO)
    run = str(tmp_path / "r")
    args = ("run", demo, "--run", run, "--until", "curate", "--limit", "20", "-q")
    code, out, _ = _main(monkeypatch, capsys, *args)
    assert code in (0, None) and out.splitlines() == [
        "ingest: in 20, kept 20, dropped none",
        "curate: in 20, kept 19, dropped special_characters_filter=1",
        f"run directory: {run}",
    ]
    assert sorted(p.name for p in Path(run).iterdir() if p.is_dir()) == ["curate", "ingest"]
    code, _, err = _main(monkeypatch, capsys, "run", demo, "--run", run, "--until", "bogus", "-q")
    assert (code, err) == (
        2,
        "error: --until bogus: not a stage of this recipe; valid: ingest, curate, generate, score, select, "
        "export\n",
    )


def test_config_file_replaces_the_runs_saved_config(tmp_path, monkeypatch, capsys):
    captions = _captions(tmp_path)
    run = str(tmp_path / "r")
    assert _main(monkeypatch, capsys, "ingest", captions, "--run", run, "-q")[0] in (0, None)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"ingest: {{inputs: [{captions}]}}\ncurate: {{recipe: none, dedup: false}}\n")
    code, out, _ = _main(monkeypatch, capsys, "curate", "--run", run, "--config", str(recipe), "-q")
    assert code in (0, None) and out == "curate: in 3, kept 3, dropped none\n"
    assert "recipe: none" in (Path(run) / "config.yaml").read_text()
