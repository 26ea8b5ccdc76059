"""Evaluation hand-off: the lmms-eval command for the SynthVLM paper's benchmarks; no benchmark lives here."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

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
TEXT_ONLY: frozenset[str] = frozenset({"mmlu"})
"""Benchmarks whose questions have no image."""
NEEDS_IMAGES: frozenset[str] = frozenset({"llava_hf"})
"""Model classes that cannot run a text-only task: lmms-eval's llava_hf `loglikelihood` flattens the task's
visual list, which a text-only task leaves None, and crashes. Text-only benchmarks are left out for them."""
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def split_benchmarks(benchmarks: Sequence[str], *, model_type: str) -> tuple[list[str], list[str]]:
    """The benchmarks `model_type` can run, in the order given, and the text-only ones it cannot."""
    if model_type not in NEEDS_IMAGES:
        return list(benchmarks), []
    return [b for b in benchmarks if b not in TEXT_ONLY], [b for b in benchmarks if b in TEXT_ONLY]


def builder_model_name(model: str) -> tuple[str, str]:
    """The name LLaVA's `get_model_name_from_path` gives a checkpoint (its folder name, joined to the
    parent's for a `checkpoint-N` folder), and the folder that name comes from. LLaVA's builder loads the
    vision tower only when the name contains "llava"."""
    parts = model.rstrip("/").split("/")
    if parts[-1].startswith("checkpoint-") and len(parts) > 1:
        return f"{parts[-2]}_{parts[-1]}", parts[-2]
    return parts[-1], parts[-1]


def eval_warnings(model: str, *, model_type: str, benchmarks: Sequence[str]) -> list[str]:
    """What will go wrong, or is left out, in the lmms-eval run of `model`: one sentence each."""
    found = []
    if not Path(model).exists():
        if _HUB_ID.fullmatch(model) and not model.startswith("."):
            found.append(
                f"no folder {model} here: lmms-eval will look for it on the Hugging Face Hub "
                "(if you meant a checkpoint folder, check the path)"
            )
        else:
            found.append(f"checkpoint {model} does not exist: pass the folder the training run saved")
    name, folder = builder_model_name(model)
    if model_type == "llava" and "llava" not in name.lower():
        found.append(
            f"LLaVA's builder will load {model} as a plain language model, without its vision tower: it "
            f'keys on the folder name ({name!r}), which must contain "llava"; rename the folder {folder!r}, '
            f"e.g. to 'llava-{folder}'"
        )
    _, left_out = split_benchmarks(benchmarks, model_type=model_type)
    if left_out:
        found.append(
            f"{', '.join(left_out)} left out: lmms-eval's {model_type} model class crashes on text-only "
            "tasks (it needs an image per question); score the language model on it with "
            "lm-evaluation-harness"
        )
    return found


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
    """argv of the lmms-eval run that scores `model` on `benchmarks` (launched with accelerate).

    Text-only benchmarks are left out for a model class that cannot run them (`split_benchmarks`);
    `eval_warnings` says so.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; choose from {list(MODEL_TYPES)}")
    if num_processes < 1 or batch_size < 1:
        raise ValueError("num_processes and batch_size must be at least 1")
    tasks = lmms_eval_tasks(benchmarks, local_splits=local_splits)  # unknown names first
    runnable, left_out = split_benchmarks(benchmarks, model_type=model_type)
    if not runnable:
        raise ValueError(
            f"nothing to evaluate: {', '.join(left_out)} is text-only, which lmms-eval's {model_type} model "
            "class cannot run; pass image benchmarks too (sqa, mme, pope, gqa, vqav2, vizwiz, mmvet)"
        )
    tasks = [t for b, t in zip(benchmarks, tasks, strict=True) if b in runnable]
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
        ",".join(tasks),
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
