"""Evaluation hand-off: the lmms-eval command for the SynthVLM paper's benchmarks; no benchmark lives here."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
from collections.abc import Sequence

from synthvlm.core.errors import UserError

# The paper's table (as LLaVA-1.5 reports them) -> lmms-eval task names. VQAv2 and VizWiz are scored on
# their test servers: lmms-eval writes the submission files; `local_splits` swaps in the val splits.
BENCHMARKS: dict[str, str] = {
    "sqa": "scienceqa_img",
    "mmlu": "mmlu",
    "mme": "mme",
    "pope": "pope",
    "gqa": "gqa",
    "vqav2": "vqav2_test",
    "vizwiz": "vizwiz_vqa_test",
    "mmvet": "mmvet",
}
LOCAL_SPLITS: dict[str, str] = {"vqav2": "vqav2_val", "vizwiz": "vizwiz_vqa_val"}
# lmms-eval model classes: `llava` loads LLaVA-repo checkpoints (needs the llava package), `llava_hf`
# loads transformers' LlavaForConditionalGeneration folders.
MODEL_TYPES = ("llava", "llava_hf")


def lmms_eval_tasks(benchmarks: Sequence[str], *, local_splits: bool = False) -> list[str]:
    """lmms-eval task names of our benchmark names, in the order given."""
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    return [LOCAL_SPLITS[b] if local_splits and b in LOCAL_SPLITS else BENCHMARKS[b] for b in benchmarks]


def lmms_eval_command(
    model: str,
    *,
    model_type: str = "llava",
    benchmarks: Sequence[str] = tuple(BENCHMARKS),
    local_splits: bool = False,
    num_processes: int = 1,
    batch_size: int = 1,
    output_path: str = "lmms-eval-logs",
    run_name: str = "synthvlm",
) -> list[str]:
    """argv of the lmms-eval run that scores `model` on `benchmarks` (launched with accelerate)."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; choose from {list(MODEL_TYPES)}")
    if num_processes < 1 or batch_size < 1:
        raise ValueError("num_processes and batch_size must be at least 1")
    return [
        "accelerate",
        "launch",
        f"--num_processes={num_processes}",
        "-m",
        "lmms_eval",
        "--model",
        model_type,
        "--model_args",
        f"pretrained={model}",
        "--tasks",
        ",".join(lmms_eval_tasks(benchmarks, local_splits=local_splits)),
        "--batch_size",
        str(batch_size),
        "--log_samples",
        "--log_samples_suffix",
        run_name,
        "--output_path",
        output_path,
    ]


def format_command(argv: Sequence[str]) -> str:
    """One shell-quoted line, ready to paste."""
    return shlex.join(argv)


def launch(argv: Sequence[str]) -> int:
    """Run lmms-eval in a child process and return its exit code."""
    if importlib.util.find_spec("lmms_eval") is None:
        raise UserError(
            "lmms-eval is not installed: `pip install lmms-eval` (see docs/training.md), then rerun"
        )
    return subprocess.run(list(argv), check=False).returncode
