"""`synthvlm train` and `synthvlm eval`: thin shells over `synthvlm.train` (heavy imports inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

TRAIN_EXTRA = "pip install 'synthvlm[train]'"


def train(
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            help="An export folder (llava/, webdataset/, parquet/) or a LLaVA JSON, as "
            "PATH[,images=DIR][,ratio=R]; repeat to mix LLaVA JSONs.",
        ),
    ],
    output_dir: Annotated[
        Path,
        typer.Option(
            "--out", help="Where mm_projector.bin, mm_projector.safetensors and train_config.json go."
        ),
    ],
    vision_tower: Annotated[
        str, typer.Option("--vision-tower", help="CLIP vision tower: hub id or folder.")
    ] = "openai/clip-vit-large-patch14-336",
    language_model: Annotated[
        str, typer.Option("--llm", help="Language model: hub id or folder.")
    ] = "lmsys/vicuna-7b-v1.5",
    learning_rate: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (cosine schedule).")
    ] = 1e-3,
    global_batch_size: Annotated[
        int, typer.Option("--global-batch", help="Per-device batch x accumulation x processes.")
    ] = 256,
    per_device_batch_size: Annotated[
        int, typer.Option("--per-device-batch", help="Samples per device per step.")
    ] = 32,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the data.")] = 1,
    warmup_ratio: Annotated[
        float, typer.Option("--warmup-ratio", help="Fraction of steps of linear warmup.")
    ] = 0.03,
    max_length: Annotated[int, typer.Option("--max-length", help="Token limit per sample.")] = 2048,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Stop after this many steps (smoke runs).")
    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="bf16, fp16 or fp32.")] = "bf16",
    num_workers: Annotated[int, typer.Option("--num-workers", help="DataLoader worker processes.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of initialisation and shuffling.")] = 0,
) -> None:
    """Stage-1 LLaVA-1.5 pretraining: only the projector trains.

    Multi-GPU: `accelerate launch -m synthvlm train ...`.
    """
    from synthvlm.core.errors import UserError

    try:
        from synthvlm.train.pretrain import PretrainConfig, pretrain
    except ImportError as e:
        raise UserError(f"training needs the `train` extra ({e.name} is missing): {TRAIN_EXTRA}") from e
    config = PretrainConfig(
        vision_tower=vision_tower,
        language_model=language_model,
        data=data,
        output_dir=str(output_dir),
        learning_rate=learning_rate,
        global_batch_size=global_batch_size,
        per_device_batch_size=per_device_batch_size,
        epochs=epochs,
        warmup_ratio=warmup_ratio,
        max_length=max_length,
        max_steps=max_steps,
        precision=precision,
        num_workers=num_workers,
        seed=seed,
    )
    try:
        result = pretrain(config)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from e
    typer.echo(f"trained {result.steps} steps on {result.records} records; projector in {result.output_dir}")


def eval_cmd(
    model: Annotated[
        str,
        typer.Argument(
            help="A trained model: LLaVA-repo checkpoint folder or transformers Llava folder / hub id."
        ),
    ],
    model_type: Annotated[
        str, typer.Option("--model-type", help="llava (LLaVA repo checkpoints) or llava_hf (transformers).")
    ] = "llava",
    benchmarks: Annotated[
        str, typer.Option("--benchmarks", help="Comma-separated: sqa,mmlu,mme,pope,gqa,vqav2,vizwiz,mmvet.")
    ] = "sqa,mmlu,mme,pope,gqa,vqav2,vizwiz,mmvet",
    local_splits: Annotated[
        bool, typer.Option("--local-splits", help="VQAv2/VizWiz val splits instead of the test servers.")
    ] = False,
    num_processes: Annotated[
        int, typer.Option("--num-processes", help="Processes (GPUs) lmms-eval uses.")
    ] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="lmms-eval batch size.")] = 1,
    output_path: Annotated[
        str, typer.Option("--output-path", help="Folder for lmms-eval logs and results.")
    ] = "lmms-eval-logs",
    start: Annotated[bool, typer.Option("--launch", help="Launch it instead of only printing it.")] = False,
) -> None:
    """Print (or, with --launch, run) the lmms-eval command for the SynthVLM paper's benchmarks.

    Warnings go to stderr, so stdout stays one line to paste.
    """
    from synthvlm.core.errors import UserError
    from synthvlm.train.evaluate import eval_warnings, format_command, launch, lmms_eval_command

    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    try:
        argv = lmms_eval_command(
            model,
            model_type=model_type,
            benchmarks=names,
            local_splits=local_splits,
            num_processes=num_processes,
            batch_size=batch_size,
            output_path=output_path,
        )
    except ValueError as e:
        raise UserError(str(e)) from e
    for warning in eval_warnings(model, model_type=model_type, benchmarks=names):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(format_command(argv))
    if start:
        raise typer.Exit(launch(argv))


def register(app: typer.Typer) -> None:
    """Add `train` and `eval` to the synthvlm command line."""
    app.command("train")(train)
    app.command("eval")(eval_cmd)
