"""The `synthvlm` command line: a thin shell over `synthvlm.pipeline`."""

from __future__ import annotations

import errno
import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from synthvlm import pipeline
from synthvlm.config import (
    CUTS,
    CurateConfig,
    ExportConfig,
    GenerateConfig,
    IngestConfig,
    RunConfig,
    ScoreConfig,
    load_config,
)
from synthvlm.core import fsio, interrupt
from synthvlm.core.errors import ShardFailedError, UserError
from synthvlm.core.progress import INTERVAL_ENV, interval, run_progress
from synthvlm.generate.presets import PRESETS
from synthvlm.plan import ANCHORS


class _Group(typer.core.TyperGroup):
    """Typer's group, listing flags without the `<bool>` value they never take."""

    def get_command(self, ctx: typer.Context, cmd_name: str) -> typer.core.TyperCommand | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _bare_flags(command, ctx)
        return command

    def format_help(self, ctx: typer.Context, formatter: typer.core._click.HelpFormatter) -> None:
        _bare_flags(self, ctx)
        super().format_help(ctx, formatter)


def _bare_flags(command: typer.core.TyperCommand | typer.core.TyperGroup, ctx: typer.Context) -> None:
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # the help shows an option's metavar in place of its type


app = typer.Typer(
    cls=_Group,
    help="Build SynthVLM-style synthetic image-caption datasets: "
    "ingest, curate, generate, score, select, export "
    "(plus report, plan, train, eval).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Lines never wrap: a pipe is 80 columns, and a path cut in two breaks whoever greps for it.
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from synthvlm import __version__

        out.print(f"synthvlm {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Options given before the command (the app's help text is Typer's `help` above)."""


RunOpt = Annotated[
    str, typer.Option("--run", help="Run directory (created if needed): a path or an fsspec URL (s3://...).")
]
FromOpt = Annotated[
    str | None,
    typer.Option("--from", help="Recompute from this stage on (deletes its outputs and later stages')."),
]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="Where tasks run: local or ray.")]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster to join with --executor ray: auto or ray://HOST:PORT."),
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="No progress. Without a terminal (nohup, Slurm, tee) progress is one line every "
        f"${INTERVAL_ENV} seconds (default 30).",
    ),
]


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A recipe whose settings replace the run's saved config (this command's options still apply).",
    ),
]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", help="Ingest only the first N records of the inputs: try a recipe on a sample."),
]


def _initially(value: object) -> str:
    """The shown default of an option that replaces a setting saved in the run: the run keeps its own."""
    return f"{value}, or the run's own"


def _refuse_file(run: str | Path) -> None:
    """A --run naming a file is refused in the words `pipeline.run` uses, before anything reads it."""
    run_dir = fsio.run_path(run)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory: pass a folder to --run")


def _config(run: str, config_file: Path | None = None) -> RunConfig:
    _refuse_file(run)
    if config_file is not None:
        return load_config(config_file)
    config = pipeline.load_run_config(run)
    if config is None:
        raise UserError(
            f"{run} is not a synthvlm run directory yet: start it with `synthvlm ingest FILES --run {run}`"
        )
    return config


def _run_stages(
    run: str,
    config: RunConfig,
    stages: list[str] | None,
    recompute: str | None,
    executor: str,
    quiet: bool,
    address: str | None = None,
) -> None:
    config = config.updated("ray", address=address)
    if not quiet:
        interval()  # a bad $SYNTHVLM_PROGRESS_INTERVAL is refused before any work
    grace = interrupt.grace_seconds()

    def say(line: str) -> None:
        err.print(line, markup=False, highlight=False)

    try:
        with interrupt.graceful_stop(grace=grace, say=say):
            with run_progress(stages if stages is not None else pipeline.default_stages(config)):
                results = pipeline.run(
                    run,
                    config,
                    stages=stages,
                    recompute_from=recompute,
                    executor=executor,
                    progress=not quiet,
                )
    except interrupt.StopRequested as stop:
        say(_interrupted(run))
        raise typer.Exit(stop.exit_code) from None
    for name, f in results.items():
        dropped = ", ".join(f"{r}={n}" for r, n in f["dropped"].items()) or "none"
        out.print(f"{name}: in {f['in']}, kept {f['kept']}, dropped {dropped}")
    if "export" in results:
        for warning in pipeline.licence_warnings(run):
            err.print(f"warning: {warning}", markup=False, highlight=False)


def _interrupted(run: str) -> str:
    """What a stop leaves: each stage's committed shards (they stay) and the command that goes on from them.

    That command is the one given, less `--from`: the stages it reset are already reset.
    """
    args, rest = [], iter(sys.argv[1:])
    for arg in rest:
        if arg == "--from":
            next(rest, None)
        elif not arg.startswith("--from="):
            args.append(arg)
    try:
        stages = pipeline.status(run)["stages"]
    except UserError:  # not a run yet: nothing was kept
        stages = {}
    kept = [
        f"{name} (complete)" if f["complete"] else f"{name} ({f['tasks_done']}/{f['tasks_total']} shards)"
        for name, f in stages.items()
        if f["complete"] or f["tasks_done"]
    ]
    what = f"{run} keeps {', '.join(kept)}" if kept else f"nothing was kept in {run} yet"
    return f"interrupted: {what}; resume with: {shlex.join(['synthvlm', *args])}"


@app.command()
def ingest(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Caption files or globs (JSON, JSONL, Parquet, CSV/TSV, TXT, COCO, Flickr8k, LLaVA); "
            "default: the run's configured inputs (e.g. what `synthvlm caption` added)."
        ),
    ] = None,
    *,
    run: RunOpt,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Force a format instead of detecting it.",
            show_default=_initially(IngestConfig.model_fields["format"].default),
        ),
    ] = None,
    skip_bad_files: Annotated[
        bool | None,
        typer.Option(
            "--skip-bad-files",
            help="Record unparseable files as rejected instead of stopping.",
            show_default=_initially("off"),
        ),
    ] = None,
    shard_rows: Annotated[
        int | None,
        typer.Option(
            "--shard-rows",
            help="Input records per shard.",
            show_default=_initially(IngestConfig.model_fields["shard_rows"].default),
        ),
    ] = None,
    limit: LimitOpt = None,
    config_file: ConfigOpt = None,
    recompute: FromOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Read caption files into the run's caption pool."""
    _refuse_file(run)
    if config_file is not None:
        config = load_config(config_file)
    else:
        config = pipeline.load_run_config(run) or RunConfig()
    config = config.updated(
        "ingest",
        inputs=[str(Path(i).resolve()) if Path(i).exists() else i for i in inputs] if inputs else None,
        format=fmt,
        skip_bad_files=skip_bad_files,
        shard_rows=shard_rows,
        limit=limit,
    )
    _run_stages(run, config, ["ingest"], recompute, "local", quiet)


@app.command()
def curate(
    run: RunOpt,
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            help="Filter recipe: synthvlm (the paper's Table 1) or none.",
            show_default=_initially(CurateConfig.model_fields["recipe"].default),
        ),
    ] = None,
    recompute: FromOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: QuietOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Filter captions with the recipe's rules and drop exact duplicates."""
    config = _config(run, config_file).updated("curate", recipe=recipe)
    _run_stages(run, config, ["curate"], recompute, executor, quiet, address)


@app.command()
def generate(
    run: RunOpt,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="A generator preset: sdxl, flux1-schnell, sana-sprint, ... (docs/generators.md).",
            show_default=_initially(GenerateConfig.model_fields["preset"].default),
        ),
    ] = None,
    candidates: Annotated[
        int | None,
        typer.Option(
            "--candidates",
            help="Images per caption.",
            show_default=_initially(GenerateConfig.model_fields["candidates_per_caption"].default),
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Images per pipeline call (a ceiling).",
            show_default=_initially(f"the preset's: {PRESETS['sdxl'].settings['batch_size']} for sdxl"),
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="auto, cpu, cuda, cuda:1, ...",
            show_default=_initially(GenerateConfig.model_fields["device"].default),
        ),
    ] = None,
    images_per_shard: Annotated[
        int | None,
        typer.Option(
            "--images-per-shard",
            help="Images per output tar shard (the unit of resume); keep it a multiple of --batch-size.",
            show_default=_initially(GenerateConfig.model_fields["images_per_shard"].default),
        ),
    ] = None,
    recompute: FromOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: QuietOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Generate candidate images for every curated caption."""
    config = _config(run, config_file).updated(
        "generate",
        preset=preset,
        candidates_per_caption=candidates,
        batch_size=batch_size,
        device=device,
        images_per_shard=images_per_shard,
    )
    _run_stages(run, config, ["generate"], recompute, executor, quiet, address)


@app.command()
def score(
    run: RunOpt,
    clip_model: Annotated[
        str | None,
        typer.Option(
            "--clip-model",
            help="CLIP hub id or local directory.",
            show_default=_initially(ScoreConfig.model_fields["clip_model"].default),
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="auto, cpu, cuda, cuda:1, ...",
            show_default=_initially(ScoreConfig.model_fields["device"].default),
        ),
    ] = None,
    recompute: FromOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: QuietOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Score every generated image: CLIPScore + lambda * SSIM."""
    config = _config(run, config_file).updated("score", clip_model=clip_model, device=device)
    _run_stages(run, config, ["score"], recompute, executor, quiet, address)


@app.command()
def select(
    run: RunOpt,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k",
            help="Keep the K best.",
            show_default="top-k 100000, or the run's own cut",
        ),
    ] = None,
    fraction: Annotated[
        float | None, typer.Option("--fraction", help="Keep this fraction of the ranked rows.")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Keep rows scoring at least this.")
    ] = None,
    recompute: FromOpt = None,
    quiet: QuietOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Keep the best candidate per caption, then the global top-K (or a fraction, or a threshold)."""
    # A cut given here replaces the recipe's cut.
    given = top_k is not None or fraction is not None or threshold is not None
    config = _config(run, config_file).updated(
        "select", unset=CUTS if given else (), top_k=top_k, fraction=fraction, threshold=threshold
    )
    _run_stages(run, config, ["select"], recompute, "local", quiet)


@app.command()
def export(
    run: RunOpt,
    formats: Annotated[
        list[str] | None,
        typer.Option("--format", help="llava, webdataset, parquet, hf (repeatable; hf: a hub dataset repo)."),
    ] = None,
    out_dir: Annotated[
        str | None, typer.Option("--out", help="Export folder or URL (default RUN/export).")
    ] = None,
    rows_per_shard: Annotated[
        int | None,
        typer.Option(
            "--rows-per-shard",
            help="Records per WebDataset tar / Parquet file.",
            show_default=_initially(ExportConfig.model_fields["rows_per_shard"].default),
        ),
    ] = None,
    recompute: FromOpt = None,
    quiet: QuietOpt = False,
    config_file: ConfigOpt = None,
) -> None:
    """Write the selection as LLaVA JSON + images, WebDataset shards, Parquet and/or a hub dataset folder."""
    out = fsio.absolute(fsio.run_path(out_dir)) if out_dir else None
    config = _config(run, config_file).updated(
        "export", formats=formats, out=out, rows_per_shard=rows_per_shard
    )
    _run_stages(run, config, ["export"], recompute, "local", quiet)


@app.command(name="run")
def run_cmd(
    config_file: Annotated[Path, typer.Argument(help="YAML recipe, e.g. configs/demo.yaml.")],
    run: Annotated[
        str | None,
        typer.Option("--run", help="Run directory or fsspec URL (default runs/<recipe name>)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Stop after this stage (e.g. curate, to look at the pool first)."),
    ] = None,
    limit: LimitOpt = None,
    recompute: FromOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole pipeline from a recipe, resuming whatever is already done."""
    config = load_config(config_file).updated("ingest", limit=limit)
    run = run or _default_run(config_file)
    stages = pipeline.default_stages(config)
    if until is not None:
        if until not in stages:
            raise UserError(f"--until {until}: not a stage of this recipe; valid: {', '.join(stages)}")
        stages = stages[: stages.index(until) + 1]
    _run_stages(run, config, stages, recompute, executor, quiet, address)
    out.print(f"run directory: {run}")


def _default_run(config_file: Path) -> str:
    return str(Path("runs") / config_file.stem)


@app.command()
def check(
    config_file: Annotated[Path, typer.Argument(help="YAML recipe, e.g. configs/synthvlm-paper.yaml.")],
    run: Annotated[
        str | None,
        typer.Option("--run", help="Run directory or fsspec URL (default runs/<recipe name>)."),
    ] = None,
    executor: ExecutorOpt = "local",
    as_json: Annotated[
        bool, typer.Option("--json", help='One JSON object: {"problems": [{what, fix}], "notes": [...]}.')
    ] = False,
) -> None:
    """Check, doing no work, that every model, input, folder and extra the recipe needs is there;
    exit 2 when something is missing."""
    from synthvlm.preflight import preflight

    config = load_config(config_file)
    stages = pipeline.default_stages(config)
    report = preflight(config, run_dir=run or _default_run(config_file), stages=stages, executor=executor)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        for note in report.notes:
            typer.echo(f"note: {note}")
        typer.echo(report.message() if report.problems else f"ok: nothing missing for {', '.join(stages)}")
    if report.problems:
        raise typer.Exit(2)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo run and its exports.")] = Path(
        "synthvlm-demo"
    ),
    quiet: QuietOpt = False,
) -> None:
    """Run the whole pipeline offline on bundled captions with tiny random-weight models."""
    from synthvlm.demo import demo_config

    config = demo_config(out_dir)
    _run_stages(str(out_dir / "run"), config, None, None, "local", quiet)
    for fmt in config.export.formats:
        out.print(f"export ({fmt}): {out_dir / 'export' / fmt}")
    out.print(f"run directory: {out_dir / 'run'}  (synthvlm status {out_dir / 'run'})")


@app.command()
def status(
    run: Annotated[str | None, typer.Argument(help="Run directory or fsspec URL.")] = None,
    run_opt: Annotated[
        str | None, typer.Option("--run", help="The run directory, as the other commands take it.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='One JSON object: {"stages": {name: {in, kept, dropped, ...}}, "generators": {...}}.',
        ),
    ] = False,
) -> None:
    """Progress and funnel of every stage of a run."""
    if run is not None and run_opt is not None and run != run_opt:
        raise UserError(f"two runs given ({run} and --run {run_opt}): pass one, `synthvlm status RUN`")
    run = run if run is not None else run_opt
    if run is None:
        raise UserError("which run? pass its directory: `synthvlm status RUN`")
    _refuse_file(run)
    report = pipeline.status(run)
    if as_json:
        sys.stdout.write(json.dumps(report, sort_keys=False) + "\n")
        return
    table = Table(title=f"synthvlm run {run}")
    for col in ("stage", "progress", "in", "kept", "dropped"):
        table.add_column(col, justify="right" if col in ("in", "kept") else "left")
    for name, f in report["stages"].items():
        progress = "complete" if f["complete"] else f"{f['tasks_done']}/{f['tasks_total']} shards"
        dropped = ", ".join(f"{r} {n}" for r, n in f["dropped"].items()) or "-"
        table.add_row(name, progress, str(f["in"]), str(f["kept"]), dropped)
    out.print(table)
    generators = report.get("generators", {})
    if len(generators) > 1:
        table = Table(title="generators")
        table.add_column("generator", no_wrap=True)
        for col in ("candidates", "failed", "selected", "share", "s/selected"):
            table.add_column(col, justify="right")
        for name, g in generators.items():
            share = "-" if g["selection_share"] is None else f"{g['selection_share']:.1%}"
            cost = "-" if g["seconds_per_selected"] is None else f"{g['seconds_per_selected']:.3f}"
            counts = (g["candidates"], g["failed"], g["selected"])
            table.add_row(name, *map(str, counts), share, cost)
        out.print(table)


@app.command()
def validate(
    folders: Annotated[
        list[str],
        typer.Argument(
            help="Export format folders or URLs (each holds a manifest.json), or an export folder: every "
            "format folder in it is checked."
        ),
    ],
) -> None:
    """Check that every exported record has a decodable image and that counts match the selection."""
    from synthvlm.validate import format_folders, validate_export

    for given in folders:
        if fsio.run_path(given).is_file():
            raise UserError(
                f"{given} is a file, not an export folder: pass the folder that holds manifest.json "
                "(or the export folder above it)"
            )
    failed = False
    for folder in [f for given in folders for f in format_folders(given)]:
        problems = validate_export(folder)
        if problems:
            failed = True
            typer.echo(f"{folder}: {len(problems)} problem(s)", err=True)
            for p in problems:
                typer.echo(f"  {p}", err=True)
        else:
            out.print(f"{folder}: ok")
    if failed:
        raise typer.Exit(1)


@app.command()
def plan(
    config_file: Annotated[Path, typer.Argument(help="YAML recipe of the job to project.")],
    gpus: Annotated[int, typer.Option("--gpus", help="Number of GPUs.")],
    gpu_type: Annotated[
        str,
        typer.Option(
            "--gpu-type",
            help="GPU the cost was measured on; measured anchors exist for: "
            f"{', '.join(ANCHORS)} (other types need --seconds-per-image or --run).",
        ),
    ] = "H100",
    captions: Annotated[
        int | None,
        typer.Option(
            "--captions",
            help="Captions to generate for (default: the run's curated count with --run, else the "
            "captions in the recipe's inputs, before curation).",
        ),
    ] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="A run whose curated captions and generate timings to use.")
    ] = None,
    seconds_per_image: Annotated[
        float | None,
        typer.Option("--seconds-per-image", help="Measured cost at the recipe's steps and size."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
) -> None:
    """Project GPU-hours and wall time of the recipe's generate job from a measured per-image cost."""
    from synthvlm.plan import costs, count_input_captions, project

    config = load_config(config_file)
    if run is not None:
        _refuse_file(run)
    counted = captions is None and run is None
    if counted:
        captions = count_input_captions(config)
    elif captions is None:
        curate = pipeline.status(run)["stages"].get("curate")
        if curate is None or not curate["complete"]:
            raise UserError(f"{run} has no finished curate stage to count captions from; pass --captions N")
        captions = curate["kept"]
    per_image = costs(config, gpu_type=gpu_type, run=run, seconds_per_image=seconds_per_image)
    result = project(config, captions=captions, gpus=gpus, gpu_type=gpu_type, costs=per_image)
    if counted:
        result.assumptions.insert(0, f"{captions} captions in the recipe's inputs; curation keeps fewer")
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    out.print(
        f"{result.images:,} images x {result.seconds_per_image:.2f} s = {result.gpu_hours:,.1f} GPU-hours; "
        f"{result.wall_hours:,.1f} h wall on {gpus} x {gpu_type}"
    )
    if len(result.generators) > 1:
        for row in result.generators:
            out.print(
                f"  {row['generator']}: {row['images']:,.0f} images x {row['seconds_per_image']:.2f} s = "
                f"{row['gpu_hours']:,.1f} GPU-hours",
                markup=False,
            )
    for line in result.assumptions:
        out.print(f"  - {line}", markup=False)


@app.command()
def verify(
    run: Annotated[str, typer.Argument(help="Run directory or fsspec URL.")],
    full: Annotated[
        bool, typer.Option("--full", help="Compare every file's sha256, not only its size (reads it all).")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Forget the damaged tasks: the next run of its command redoes them."),
    ] = False,
) -> None:
    """Recheck every committed file of a run against its completion record; exit 1 on damage."""
    from synthvlm.core import layout
    from synthvlm.core.verify import repair as forget
    from synthvlm.core.verify import verify as check

    run_dir = fsio.run_path(run)
    if not layout.is_run_dir(run_dir):
        raise UserError(f"{run} is not a synthvlm run directory (no {layout.CONFIG})")
    stages = [name for name in pipeline.ORDER if layout.StageDir(run_dir, name).root.is_dir()]
    checked, damage = check(run_dir, stages, full=full)
    for d in damage:
        typer.echo(f"  {d}", err=True)
    what = "sizes and sha256" if full else "sizes"
    if not damage:
        out.print(f"{run}: {checked} files ok ({what})")
        return
    typer.echo(f"{run}: {len(damage)} of {checked} files damaged ({what})", err=True)
    if repair:
        tasks = forget(run_dir, damage)
        out.print(f"forgot {len(tasks)} task(s): {', '.join(tasks)}; rerun the run's command to redo them")
        return
    raise typer.Exit(1)


def _register_feature_commands() -> None:
    """Commands that live with their feature package."""
    from synthvlm.cli.caption import register as register_curate
    from synthvlm.cli.report import register as register_report
    from synthvlm.cli.train import register as register_train

    register_curate(app)
    register_report(app)
    register_train(app)


_register_feature_commands()


def main() -> None:
    """Entry point: user mistakes print one line and exit 2; bugs still raise."""
    try:
        app()
    except UserError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except ShardFailedError as exc:
        err.print(f"failed: {exc}", markup=False, highlight=False)
        sys.exit(1)
    except OSError as exc:
        # The filesystem refusing a path (a file where a folder goes, permissions, a full or read-only
        # disk) is the user's to fix, and its message says all there is; anything else is a bug.
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"error: {exc.strerror}{where}", markup=False, highlight=False)
        sys.exit(2)


_ENVIRONMENT_ERRNOS = {
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.EACCES,
    errno.EPERM,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
}
