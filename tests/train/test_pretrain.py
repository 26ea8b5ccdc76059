"""Stage-1 pretraining on a tiny LLaVA: loss falls, only the projector moves, checkpoints reload exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synthvlm.train.data import DataSpec, Sample, open_source
from synthvlm.train.pretrain import (
    IGNORE_INDEX,
    PretrainConfig,
    RankBatches,
    Schedule,
    build_llava,
    load_projector,
    plain_encoder,
    pretrain,
)

STEPS = 12
HF_KEYS = {f"model.multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
LLAVA_KEYS = {f"model.mm_projector.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}


def _parts(tiny_llava: Path) -> dict[str, str]:
    return {"vision_tower": str(tiny_llava / "vision"), "language_model": str(tiny_llava / "llm")}


@pytest.fixture(scope="module")
def trained(export, tiny_llava, tmp_path_factory):
    # All 8 records in every step (global batch 8 = 2 micro-batches of 4): the loss is measured on a
    # fixed batch, so its fall is the projector fitting, not batch-to-batch noise.
    config = PretrainConfig(
        **_parts(tiny_llava),
        data=[str(export / "llava")],
        output_dir=str(tmp_path_factory.mktemp("stage1") / "out"),
        learning_rate=1e-2,
        global_batch_size=8,
        per_device_batch_size=4,
        epochs=STEPS,
        precision="fp32",
        num_workers=0,
    )
    return config, pretrain(config, progress=False)


@pytest.fixture(scope="module")
def batch(export, tiny_llava):
    model, processor = build_llava(**_parts(tiny_llava))
    encoder = plain_encoder(processor, model, max_length=2048)
    return encoder, encoder.collate(list(open_source(DataSpec(export / "llava")))[:4])


def test_schedule_follows_llava_defaults_scaled_down(trained):
    config, result = trained
    assert (result.records, result.steps, result.gradient_accumulation_steps) == (8, STEPS, 2)
    saved = json.loads((Path(config.output_dir) / "train_config.json").read_text())
    assert saved["learning_rate"] == 1e-2 and saved["weight_decay"] == 0.0 and saved["warmup_ratio"] == 0.03
    assert saved["derived"]["warmup_steps"] == 1  # ceil(12 x 0.03), as transformers' Trainer rounds
    assert (
        saved["derived"]["num_image_tokens"] == 25 and saved["derived"]["mm_projector_type"] == "mlp2x_gelu"
    )
    log = [
        json.loads(line) for line in (Path(config.output_dir) / "train_log.jsonl").read_text().splitlines()
    ]
    assert [e["loss"] for e in log] == result.losses
    # Warmup starts from zero, peaks at the set rate, then the cosine decays towards zero.
    lrs = [e["lr"] for e in log]
    assert lrs[:2] == [0.0, 1e-2] and lrs[1:] == sorted(lrs[1:], reverse=True) and 0 < lrs[-1] < 1e-3


def test_defaults_are_llava_stage1():
    c = PretrainConfig(data=["x"], output_dir="o")
    assert (c.learning_rate, c.global_batch_size, c.epochs, c.warmup_ratio, c.max_length, c.weight_decay) == (
        1e-3,
        256,
        1,
        0.03,
        2048,
        0.0,
    )
    assert (c.vision_tower, c.language_model) == ("openai/clip-vit-large-patch14-336", "lmsys/vicuna-7b-v1.5")


def test_loss_decreases(trained):
    _, result = trained
    losses = result.losses
    assert len(losses) == STEPS
    print("losses", [round(x, 4) for x in losses])
    assert losses[-1] < losses[0] - 0.03


def test_only_the_projector_changes(trained, tiny_llava):
    _, result = trained
    fresh, _ = build_llava(**_parts(tiny_llava))
    before, after = fresh.state_dict(), result.model.state_dict()
    assert before.keys() == after.keys()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == HF_KEYS
    frozen = [k for k in before if k not in HF_KEYS]
    assert any(k.startswith("model.vision_tower.") for k in frozen)
    assert any(k.startswith("model.language_model.") for k in frozen) and "lm_head.weight" in frozen


def test_checkpoint_reloads_to_identical_logits(trained, tiny_llava, batch):
    config, result = trained
    out = Path(config.output_dir)
    bin_state = torch.load(out / "mm_projector.bin", weights_only=True)
    assert set(bin_state) == LLAVA_KEYS  # what LLaVA's --pretrain_mm_mlp_adapter loads
    assert bin_state["model.mm_projector.0.weight"].shape == (32, 32)
    assert set(load_file(str(out / "mm_projector.safetensors"))) == HF_KEYS
    modes = {(out / name).stat().st_mode & 0o777 for name in ("mm_projector.bin", "mm_projector.safetensors")}
    assert modes == {0o644}  # readable by the group, as the umask of the test process gives
    _, inputs = batch
    with torch.no_grad():
        expected = result.model.eval()(**inputs).logits
        for name in ("mm_projector.bin", "mm_projector.safetensors"):
            fresh, _ = build_llava(**_parts(tiny_llava))
            untrained = fresh.eval()(**inputs).logits
            load_projector(fresh, out / name)
            assert torch.equal(fresh(**inputs).logits, expected), name
            assert not torch.equal(untrained, expected)


def test_labels_cover_only_the_caption(batch, export):
    encoder, inputs = batch
    tok = encoder.tokenizer
    samples = list(open_source(DataSpec(export / "llava")))[:4]
    prompt = 1 + 25  # BOS + the image features
    for row, sample in enumerate(samples):
        ids, labels = inputs["input_ids"][row], inputs["labels"][row]
        length = int(inputs["attention_mask"][row].sum())
        assert ids[0] == tok.bos_token_id and (ids[1:prompt] == encoder.image_token_id).all()
        assert (labels[:prompt] == IGNORE_INDEX).all() and (labels[length:] == IGNORE_INDEX).all()
        assert torch.equal(labels[prompt:length], ids[prompt:length])
        assert tok.decode(labels[prompt:length]) == sample.caption + "\n"  # LLaVA's plain template
        assert (ids[length:] == tok.pad_token_id).all()
    assert inputs["pixel_values"].shape == (4, 3, 30, 30)


def test_max_length_cuts_the_caption_never_the_image(batch):
    encoder, _ = batch
    short = type(encoder)(**{**encoder.__dict__, "max_length": 30})
    ids, labels = short.encode("a long caption that does not fit")
    assert len(ids) == 30 and sum(label != IGNORE_INDEX for label in labels) == 4
    with pytest.raises(ValueError, match="no room"):
        type(encoder)(**{**encoder.__dict__, "max_length": 26}).encode("x")


def test_schedule_pads_and_shortens_the_last_step():
    s = Schedule(records=20, per_device=4, world=1, accumulation=2, epochs=1)
    assert (s.micro_batches_per_epoch, s.steps_per_epoch) == (5, 3)
    assert [s.micro_steps(i) for i in range(3)] == [2, 2, 1]
    s = Schedule(records=10, per_device=4, world=2, accumulation=2, epochs=1)
    assert (s.micro_batches_per_epoch, s.steps_per_epoch, s.micro_steps(0)) == (4, 1, 2)


class _Ids:
    """Collates a micro-batch to its sample ids, to check which samples each rank and worker gets."""

    def collate(self, samples):
        return [s.id for s in samples]


@pytest.mark.parametrize("workers", [0, 2])
def test_ranks_split_micro_batches_and_pad_from_the_start(workers):
    from torch.utils.data import DataLoader

    source = [Sample(f"s{i}", "c", b"") for i in range(10)]
    schedule = Schedule(records=10, per_device=2, world=2, accumulation=1, epochs=1)
    per_rank = [
        list(DataLoader(RankBatches(source, _Ids(), schedule, rank), batch_size=None, num_workers=workers))
        for rank in range(2)
    ]
    # 5 micro-batches, padded to 6 so both ranks run 3; the padding wraps to the first samples.
    assert per_rank[0] == [["s0", "s1"], ["s4", "s5"], ["s8", "s9"]]
    assert per_rank[1] == [["s2", "s3"], ["s6", "s7"], ["s0", "s1"]]


def test_global_batch_must_split_evenly(export, tiny_llava, tmp_path):
    config = PretrainConfig(
        **_parts(tiny_llava),
        data=[str(export / "llava")],
        output_dir=str(tmp_path),
        global_batch_size=10,
        per_device_batch_size=4,
        precision="fp32",
    )
    with pytest.raises(ValueError, match="not a multiple"):
        pretrain(config, progress=False)


def test_eval_command_names_the_papers_benchmarks():
    from synthvlm.train.evaluate import BENCHMARKS, lmms_eval_command

    argv = lmms_eval_command("ckpt/llava-synthvlm-7b", num_processes=8)
    assert argv == [
        "accelerate",
        "launch",
        "--num_processes=8",
        "-m",
        "lmms_eval",
        "--model",
        "llava",
        "--model_args",
        "pretrained=ckpt/llava-synthvlm-7b",
        "--tasks",
        "scienceqa_img,mmlu,mme,pope,gqa,vqav2_test,vizwiz_vqa_test,mmvet",
        "--batch_size",
        "1",
        "--log_samples",
        "--log_samples_suffix",
        "synthvlm",
        "--output_path",
        "lmms-eval-logs",
    ]
    assert len(BENCHMARKS) == 8
    local = lmms_eval_command(
        "m", model_type="llava_hf", benchmarks=["vqav2", "vizwiz", "pope"], local_splits=True
    )
    assert local[local.index("--tasks") + 1] == "vqav2_val,vizwiz_vqa_val,pope" and local[6] == "llava_hf"
    with pytest.raises(ValueError, match="unknown benchmark"):
        lmms_eval_command("m", benchmarks=["textvqa"])


def test_cli_commands_print_the_eval_line():
    import typer
    from typer.testing import CliRunner

    from synthvlm.cli.train import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["eval", "m", "--benchmarks", "mme,pope"])
    assert result.exit_code == 0
    assert result.output.strip().endswith(
        "--tasks mme,pope --batch_size 1 --log_samples --log_samples_suffix synthvlm"
        " --output_path lmms-eval-logs"
    )
