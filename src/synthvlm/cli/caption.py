"""`synthvlm caption`: the caption stage (ingest reads its shards), run as every stage command runs its
stages; `caption_images` is the same from Python."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from synthvlm.config import RunConfig


def caption_config(
    run_dir: str | Path,
    inputs: Sequence[str],
    *,
    model: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    prompt: str | None = None,
    max_new_tokens: int | None = None,
) -> RunConfig:
    """The run's config (a new run's defaults) with these images and caption settings: the options left
    None keep the run's own."""
    from synthvlm import pipeline
    from synthvlm.config import RunConfig

    config = pipeline.load_run_config(run_dir) or RunConfig()
    return config.updated(
        "caption",
        inputs=list(inputs),
        model=model,
        batch_size=batch_size,
        device=device,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
    )


def caption_images(
    run_dir: str | Path,
    inputs: Sequence[str],
    *,
    model: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    prompt: str | None = None,
    max_new_tokens: int | None = None,
    recompute: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the caption stage on images; the run's ingest then reads its shards. Returns its funnel.

    Resumable like every stage: rerunning the same command does no work.
    """
    from synthvlm import pipeline

    config = caption_config(
        run_dir,
        inputs,
        model=model,
        batch_size=batch_size,
        device=device,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
    )
    recompute_from = "caption" if recompute else None
    results = pipeline.run(
        run_dir, config, stages=["caption"], recompute_from=recompute_from, progress=progress
    )
    return results["caption"]


def caption(
    images: Annotated[
        list[str],
        typer.Argument(help="Image folders, WebDataset .tar shards or Parquet files with image bytes."),
    ],
    run: Annotated[Path, typer.Option("--run", help="Run directory (created if needed).")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Image-to-text model: hub id, local folder or builtin:tiny-blip-caption "
            "(default Salesforce/blip2-opt-2.7b).",
        ),
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per forward pass.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, ...")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="Text prefix the caption continues.")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", help="Longest caption in tokens (default 30).")
    ] = None,
    recompute: Annotated[
        str | None, typer.Option("--from", help="`--from caption` recomputes the captions.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Caption real images with an image-to-text model; the next ingest reads the captions."""
    # The stage commands' one runner: progress, graceful stops and the resume line, the funnel printed.
    from synthvlm.cli import _run_stages
    from synthvlm.core.errors import UserError

    if recompute not in (None, "caption"):
        raise UserError(f"caption can only recompute itself (--from caption), not {recompute!r}")
    config = caption_config(
        run,
        images,
        model=model,
        batch_size=batch_size,
        device=device,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
    )
    _run_stages(str(run), config, ["caption"], recompute, "local", quiet)


def register(app: typer.Typer) -> None:
    """Add the caption command to the main CLI."""
    app.command("caption")(caption)
