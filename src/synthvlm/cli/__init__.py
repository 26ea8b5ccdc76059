"""The `synthvlm` command line: a thin shell over `synthvlm.pipeline`."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from synthvlm import pipeline
from synthvlm.config import CUTS, RunConfig, load_config
from synthvlm.core import fsio
from synthvlm.core.errors import ShardFailedError, UserError

app = typer.Typer(
    help="Build SynthVLM-style synthetic image-caption datasets: "
    "ingest, curate, generate, score, select, export "
    "(plus report, plan, train, eval).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()


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
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _config(run: str) -> RunConfig:
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
    results = pipeline.run(
        run, config, stages=stages, recompute_from=recompute, executor=executor, progress=not quiet
    )
    for name, f in results.items():
        dropped = ", ".join(f"{r}={n}" for r, n in f["dropped"].items()) or "none"
        out.print(f"{name}: in {f['in']}, kept {f['kept']}, dropped {dropped}")


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
        str | None, typer.Option("--format", help="Force a format instead of detecting it.")
    ] = None,
    skip_bad_files: Annotated[
        bool | None,
        typer.Option("--skip-bad-files", help="Record unparseable files as rejected instead of stopping."),
    ] = None,
    shard_rows: Annotated[int | None, typer.Option("--shard-rows", help="Input records per shard.")] = None,
    recompute: FromOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Read caption files into the run's caption pool."""
    config = pipeline.load_run_config(run) or RunConfig()
    config = config.updated(
        "ingest",
        inputs=[str(Path(i).resolve()) if Path(i).exists() else i for i in inputs] if inputs else None,
        format=fmt,
        skip_bad_files=skip_bad_files,
        shard_rows=shard_rows,
    )
    _run_stages(run, config, ["ingest"], recompute, "local", quiet)


@app.command()
def curate(
    run: RunOpt,
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Filter recipe (synthvlm: the paper's Table 1).")
    ] = None,
    recompute: FromOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Filter captions with the recipe's rules and drop exact duplicates."""
    config = _config(run).updated("curate", recipe=recipe)
    _run_stages(run, config, ["curate"], recompute, executor, quiet, address)


@app.command()
def generate(
    run: RunOpt,
    preset: Annotated[
        str | None, typer.Option("--preset", help="sdxl, sdxl-base, sd3-medium, tiny, tiny-refiner.")
    ] = None,
    candidates: Annotated[int | None, typer.Option("--candidates", help="Images per caption.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per pipeline call (a ceiling).")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:1, ...")] = None,
    recompute: FromOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Generate candidate images for every curated caption."""
    config = _config(run).updated(
        "generate", preset=preset, candidates_per_caption=candidates, batch_size=batch_size, device=device
    )
    _run_stages(run, config, ["generate"], recompute, executor, quiet, address)


@app.command()
def score(
    run: RunOpt,
    clip_model: Annotated[
        str | None, typer.Option("--clip-model", help="CLIP hub id or local directory.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:1, ...")] = None,
    recompute: FromOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Score every generated image: CLIPScore + lambda * SSIM."""
    config = _config(run).updated("score", clip_model=clip_model, device=device)
    _run_stages(run, config, ["score"], recompute, executor, quiet, address)


@app.command()
def select(
    run: RunOpt,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Keep the K best.")] = None,
    fraction: Annotated[
        float | None, typer.Option("--fraction", help="Keep this fraction of the ranked rows.")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Keep rows scoring at least this.")
    ] = None,
    recompute: FromOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Keep the best candidate per caption, then the global top-K (or a fraction, or a threshold)."""
    # A cut given here replaces the recipe's cut.
    given = top_k is not None or fraction is not None or threshold is not None
    config = _config(run).updated(
        "select", unset=CUTS if given else (), top_k=top_k, fraction=fraction, threshold=threshold
    )
    _run_stages(run, config, ["select"], recompute, "local", quiet)


@app.command()
def export(
    run: RunOpt,
    formats: Annotated[
        list[str] | None, typer.Option("--format", help="llava, webdataset, parquet (repeatable).")
    ] = None,
    out_dir: Annotated[
        str | None, typer.Option("--out", help="Export folder or URL (default RUN/export).")
    ] = None,
    recompute: FromOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write the selection as LLaVA JSON + images, WebDataset shards and/or Parquet."""
    out = fsio.absolute(fsio.run_path(out_dir)) if out_dir else None
    config = _config(run).updated("export", formats=formats, out=out)
    _run_stages(run, config, ["export"], recompute, "local", quiet)


@app.command(name="run")
def run_cmd(
    config_file: Annotated[Path, typer.Argument(help="YAML recipe, e.g. configs/demo.yaml.")],
    run: Annotated[
        str | None,
        typer.Option("--run", help="Run directory or fsspec URL (default runs/<recipe name>)."),
    ] = None,
    recompute: FromOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole pipeline from a recipe, resuming whatever is already done."""
    config = load_config(config_file)
    run = run or _default_run(config_file)
    _run_stages(run, config, None, recompute, executor, quiet, address)
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
    run: Annotated[str, typer.Argument(help="Run directory or fsspec URL.")],
    as_json: Annotated[
        bool, typer.Option("--json", help='One JSON object: {"stages": {name: {in, kept, dropped}}}.')
    ] = False,
) -> None:
    """Progress and funnel of every stage of a run."""
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


@app.command()
def validate(
    folders: Annotated[
        list[str], typer.Argument(help="Export folders or URLs (each holds a manifest.json).")
    ],
) -> None:
    """Check that every exported record has a decodable image and that counts match the selection."""
    from synthvlm.validate import validate_export

    failed = False
    for folder in folders:
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
        str, typer.Option("--gpu-type", help="GPU the cost was measured on (H100 has a measured anchor).")
    ] = "H100",
    captions: Annotated[
        int | None,
        typer.Option("--captions", help="Captions to generate for (default: the run's curated count)."),
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
    from synthvlm.plan import Measured, anchor, measured_from_run, project

    config = load_config(config_file)
    if captions is None:
        if run is None:
            raise UserError("pass --captions N, or --run RUN to use a run's curated caption count")
        curate = pipeline.status(run)["stages"].get("curate")
        if curate is None or not curate["complete"]:
            raise UserError(f"{run} has no finished curate stage to count captions from; pass --captions N")
        captions = curate["kept"]
    if seconds_per_image is not None:
        gen = config.generate.resolved()
        measured = Measured(seconds_per_image, gen.steps, gen.width * gen.height, "given on the command line")
    elif run is not None and (run / "generate" / "timing").is_dir():
        measured = measured_from_run(run)
    else:
        measured = anchor(gpu_type, config)
    result = project(config, captions=captions, gpus=gpus, gpu_type=gpu_type, measured=measured)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    out.print(
        f"{result.images:,} images x {result.seconds_per_image:.2f} s = {result.gpu_hours:,.1f} GPU-hours; "
        f"{result.wall_hours:,.1f} h wall on {gpus} x {gpu_type}"
    )
    for line in result.assumptions:
        out.print(f"  - {line}", markup=False)


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
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except ShardFailedError as exc:
        err.print(f"failed: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except OSError as exc:
        # The filesystem refusing a path (a file where a folder goes, permissions, a full or read-only
        # disk) is the user's to fix, and its message says all there is; anything else is a bug.
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        err.print(f"error: {exc.strerror}{where}", markup=False, highlight=False, soft_wrap=True)
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
