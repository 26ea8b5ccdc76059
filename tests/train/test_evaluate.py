"""`synthvlm eval`: the benchmarks each lmms-eval model class gets, and the warnings about a checkpoint."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from synthvlm.cli.train import register
from synthvlm.core.errors import UserError
from synthvlm.train.evaluate import (
    BENCHMARKS,
    TEXT_ONLY,
    builder_model_name,
    eval_warnings,
    lmms_eval_command,
    split_benchmarks,
)

ALL = list(BENCHMARKS)
LEFT_OUT = (
    "mmlu left out: lmms-eval's llava_hf model class crashes on text-only tasks (it needs an image per "
    "question); score the language model on it with lm-evaluation-harness"
)


def _tasks(argv: list[str]) -> str:
    return argv[argv.index("--tasks") + 1]


def test_text_only_benchmarks_are_left_out_for_llava_hf_only():
    assert TEXT_ONLY == {"mmlu"}
    assert split_benchmarks(ALL, model_type="llava_hf") == (
        ["sqa", "mme", "pope", "gqa", "vqav2", "vizwiz", "mmvet"],
        ["mmlu"],
    )
    assert split_benchmarks(ALL, model_type="llava") == (ALL, [])
    hf = lmms_eval_command("m", model_type="llava_hf", local_splits=True)
    assert _tasks(hf) == "scienceqa_img,mme,pope,gqa,vqav2_val,vizwiz_vqa_val,mmvet"
    assert (
        _tasks(lmms_eval_command("m")) == "scienceqa_img,mmlu,mme,pope,gqa,vqav2_test,vizwiz_vqa_test,mmvet"
    )
    with pytest.raises(ValueError) as info:
        lmms_eval_command("m", model_type="llava_hf", benchmarks=["mmlu"])
    assert str(info.value) == (
        "nothing to evaluate: mmlu is text-only, which lmms-eval's llava_hf model class cannot run; "
        "pass image benchmarks too (sqa, mme, pope, gqa, vqav2, vizwiz, mmvet)"
    )
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) \['textvqa'\]"):
        lmms_eval_command("m", model_type="llava_hf", benchmarks=["textvqa", "mmlu"])


def test_builder_model_name_follows_llava():
    assert builder_model_name("ckpt/llava-v1.5-7b-synthvlm/") == ("llava-v1.5-7b-synthvlm",) * 2
    assert builder_model_name("runs/vicuna-synth/checkpoint-500") == (
        "vicuna-synth_checkpoint-500",
        "vicuna-synth",
    )


def test_warnings_name_each_problem(tmp_path):
    good = tmp_path / "llava-v1.5-7b-synthvlm"
    good.mkdir()
    assert eval_warnings(str(good), model_type="llava", benchmarks=ALL) == []
    plain = tmp_path / "vicuna-synth"
    plain.mkdir()
    assert eval_warnings(str(plain), model_type="llava", benchmarks=["mme"]) == [
        f"LLaVA's builder will load {plain} as a plain language model, without its vision tower: it keys on "
        "the folder name ('vicuna-synth'), which must contain \"llava\"; rename the folder 'vicuna-synth', "
        "e.g. to 'llava-vicuna-synth'"
    ]
    # The transformers class does not look at the name; it cannot run MMLU.
    assert eval_warnings(str(plain), model_type="llava_hf", benchmarks=ALL) == [LEFT_OUT]
    missing = tmp_path / "llava-missing"
    assert eval_warnings(str(missing), model_type="llava", benchmarks=ALL) == [
        f"checkpoint {missing} does not exist: pass the folder the training run saved"
    ]
    assert eval_warnings("liuhaotian/llava-v1.5-7b", model_type="llava", benchmarks=ALL) == [
        "no folder liuhaotian/llava-v1.5-7b here: lmms-eval will look for it on the Hugging Face Hub "
        "(if you meant a checkpoint folder, check the path)"
    ]
    assert eval_warnings("./ckpt/llava-x", model_type="llava", benchmarks=ALL) == [
        "checkpoint ./ckpt/llava-x does not exist: pass the folder the training run saved"
    ]


def test_cli_warns_on_stderr_and_prints_the_line_on_stdout(tmp_path):
    app = typer.Typer()
    register(app)
    model = tmp_path / "synth-hf"
    model.mkdir()
    result = CliRunner().invoke(app, ["eval", str(model), "--model-type", "llava_hf"])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"warning: {LEFT_OUT}\n"
    assert result.stdout == (
        "accelerate launch --num_processes=1 -m lmms_eval --model llava_hf --model_args "
        f"pretrained={model} --tasks scienceqa_img,mme,pope,gqa,vqav2_test,vizwiz_vqa_test,mmvet "
        "--batch_size 1 --log_samples --log_samples_suffix synthvlm --output_path lmms-eval-logs\n"
    )
    result = CliRunner().invoke(app, ["eval", str(model), "--model-type", "llava_hf", "--benchmarks", "mmlu"])
    assert isinstance(result.exception, UserError)
    assert str(result.exception).startswith("nothing to evaluate: mmlu is text-only")
