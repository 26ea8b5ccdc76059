"""`synthvlm report` and `synthvlm score-dataset`: thin shells over `report.build`, `report.score_dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def report(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="HTML file (default RUN/report.html); assets go to NAME_assets/ beside it."
        ),
    ] = None,
    datasets: Annotated[
        list[Path] | None,
        typer.Option("--dataset", help="score-dataset output folder to compare in Table 4 (repeatable)."),
    ] = None,
    grid: Annotated[int, typer.Option("--grid", help="Images per grid.")] = 8,
    target: Annotated[int, typer.Option("--target", help="K for the GPU-hours projection.")] = 100_000,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="Real dataset (any score-dataset source) to measure the selected set's gap to: CMMD, PRDC.",
        ),
    ] = None,
    reference_format: Annotated[
        str, typer.Option("--reference-format", help="auto, coco, llava, webdataset, parquet, run.")
    ] = "auto",
    reference_images: Annotated[
        Path | None, typer.Option("--reference-images", help="Image folder of a COCO or LLaVA reference.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write an HTML quality report of a run: funnel, score plots, image grids, provenance, cost, Table 4,
    and with --reference the gap between the selected set and a real dataset."""
    from synthvlm.report.build import build_report, gap_json

    path = build_report(
        run,
        out=out,
        datasets=datasets or [],
        grid=grid,
        target=target,
        reference=reference,
        reference_format=reference_format,
        reference_images=reference_images,
        progress=not quiet,
    )
    typer.echo(f"report: {path}")
    if reference is not None:  # build_report refuses a reference it cannot compare, so the file is there
        from synthvlm.core import fsio

        gap = fsio.read_json(gap_json(path))
        typer.echo(gap_line(gap, source=gap["reference"]["source"], name="selected"))
        typer.echo(f"gap: {gap_json(path)}")


def score_dataset(
    source: Annotated[
        str, typer.Argument(help="COCO/LLaVA JSON, WebDataset tar(s), Parquet file(s) or a synthvlm run.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder: scores.parquet and summary.json.")],
    fmt: Annotated[
        str, typer.Option("--format", help="auto, coco, llava, webdataset, parquet, run.")
    ] = "auto",
    images: Annotated[Path | None, typer.Option("--images", help="Image folder (COCO and LLaVA).")] = None,
    like: Annotated[
        Path | None,
        typer.Option(
            "--like",
            help="Take the metric settings of this run, SSIM data range included (default: the pipeline's).",
        ),
    ] = None,
    clip_model: Annotated[
        str | None, typer.Option("--clip-model", help="CLIP hub id, local directory or builtin:tiny-clip.")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, ...")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per CLIP forward pass.")
    ] = None,
    ssim_data_range: Annotated[
        int | None,
        typer.Option(
            "--ssim-data-range",
            help="255: the exact SSIM of the uint8 images (default); 2: as the paper's Table 4 numbers "
            "(docs/metrics.md).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Dataset name in Table 4 (default: the source's name).")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference", help="Real dataset (same formats as SOURCE) to measure the gap to: CMMD, PRDC."
        ),
    ] = None,
    reference_format: Annotated[
        str, typer.Option("--reference-format", help="auto, coco, llava, webdataset, parquet, run.")
    ] = "auto",
    reference_images: Annotated[
        Path | None, typer.Option("--reference-images", help="Image folder of a COCO or LLaVA reference.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score an existing image-caption dataset with the pipeline's CLIPScore, SSIM and weighted score."""
    from synthvlm import pipeline
    from synthvlm.config import RunConfig
    from synthvlm.core.errors import UserError
    from synthvlm.report.score_dataset import score_dataset as run_scoring

    config = RunConfig()
    if like is not None:
        config = pipeline.load_run_config(like)
        if config is None:
            raise UserError(f"{like} is not a synthvlm run directory (no config.yaml)")
    # Validated as a config section, so a bad value (say --ssim-data-range 3) is a sentence, not a traceback.
    score = config.updated(
        "score",
        clip_model=clip_model,
        device=device,
        batch_size=batch_size,
        ssim_data_range=ssim_data_range,
    ).score
    summary = run_scoring(
        source,
        out=out,
        fmt=fmt,
        images=images,
        score=score,
        name=name,
        reference=reference,
        reference_format=reference_format,
        reference_images=reference_images,
        progress=not quiet,
    )
    failed = ", ".join(f"{r} {n}" for r, n in summary["failed"].items()) or "none"
    typer.echo(
        f"{summary['name']}: {summary['scored']} of {summary['pairs']} pairs scored (not scored: {failed}); "
        f"mean CLIP {_num(summary['clip_mean'])}, SSIM {_num(summary['ssim_mean'])}, "
        f"weighted {_num(summary['weighted_mean'])}"
    )
    if "reference" in summary:
        gap = summary["reference"]
        typer.echo(gap_line(gap, source=gap["source"], name="dataset"))
    typer.echo(f"scores: {out / 'scores.parquet'}")


def gap_line(gap: dict[str, Any], *, source: str, name: str) -> str:
    """The gap metrics in one line: CMMD and PRDC of the image and the text side (`n_<name>` points)."""
    sides = []
    for side in ("image", "text"):
        row = gap[side]
        prdc = ", ".join(f"{k} {_num(row[k])}" for k in ("precision", "recall", "density", "coverage"))
        sides.append(f"{side} ({row[f'n_{name}']} vs {row['n_reference']}) CMMD {_num(row['cmmd'])}, {prdc}")
    return f"gap to {source}: " + "; ".join(sides)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def register(app: typer.Typer) -> None:
    """Add `report` and `score-dataset` to the synthvlm command line."""
    app.command(name="report")(report)
    app.command(name="score-dataset")(score_dataset)
