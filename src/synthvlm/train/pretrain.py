"""LLaVA-1.5 stage-1 pretraining: frozen CLIP vision tower and frozen LLM, only the MLP projector trains.

The model is transformers' `LlavaForConditionalGeneration`; accelerate runs it on one or many devices.
The projector is saved twice: `mm_projector.bin` with LLaVA's key names (what LLaVA's finetune script
takes as `--pretrain_mm_mlp_adapter`) and `mm_projector.safetensors` with transformers' key names.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import DataLoader, IterableDataset

from synthvlm.core.errors import loading_model
from synthvlm.train.data import DataSpec, Sample, SampleSource, open_training_data

if TYPE_CHECKING:
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

IGNORE_INDEX = -100
PROJECTOR_BIN = "mm_projector.bin"
PROJECTOR_SAFETENSORS = "mm_projector.safetensors"
CONFIG_JSON = "train_config.json"
LOG_JSONL = "train_log.jsonl"
# LLaVA's mlp2x_gelu projector is nn.Sequential(Linear, GELU, Linear): indices 0 and 2.
LLAVA_KEYS = {"linear_1": "model.mm_projector.0", "linear_2": "model.mm_projector.2"}
HF_PREFIX = "model.multi_modal_projector."


class PretrainConfig(BaseModel):
    """Stage-1 settings; defaults are LLaVA-1.5's pretrain script (lr 1e-3, batch 256, 1 epoch, cosine)."""

    model_config = ConfigDict(extra="forbid")

    vision_tower: str = "openai/clip-vit-large-patch14-336"
    language_model: str = "lmsys/vicuna-7b-v1.5"
    data: list[str] = Field(min_length=1, description="DataSpec strings: PATH[,images=DIR][,ratio=R]")
    output_dir: str
    learning_rate: float = Field(1e-3, gt=0)
    global_batch_size: int = Field(256, gt=0)
    per_device_batch_size: int = Field(32, gt=0)
    epochs: int = Field(1, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(2048, gt=0)
    max_steps: int | None = Field(
        None, gt=0, description="Stop early (smoke runs); the schedule still spans max_steps."
    )
    vision_feature_layer: int = -2
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    gradient_checkpointing: bool = True
    num_workers: int = Field(4, ge=0)
    seed: int = 0
    log_every: int = Field(10, gt=0)


@dataclass
class PretrainResult:
    """What a run did: per-step mean losses, the schedule it followed, and the trained (unwrapped) model."""

    losses: list[float]
    steps: int
    gradient_accumulation_steps: int
    records: int
    output_dir: Path
    model: Any = field(repr=False)


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


def build_llava(
    *,
    vision_tower: str | Path,
    language_model: str | Path,
    vision_feature_layer: int = -2,
    vision_feature_select_strategy: str = "default",
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Assemble a LLaVA-1.5 model from a CLIP checkpoint and a causal LM, with a fresh 2-layer GELU projector.

    The LM's tokenizer gets an `<image>` token if it lacks one; the vision tower and LM weights are the
    loaded ones, unchanged; the projector is initialised as LLaVA does (torch's default Linear init).
    """
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPImageProcessorPil,
        CLIPVisionModel,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    _quiet_transformers()
    with loading_model(language_model):
        tokenizer = AutoTokenizer.from_pretrained(language_model)
        lm = AutoModelForCausalLM.from_pretrained(language_model, dtype=dtype)
    with loading_model(vision_tower):
        vision = CLIPVisionModel.from_pretrained(vision_tower, dtype=dtype)
        image_processor = CLIPImageProcessorPil.from_pretrained(vision_tower)
    image_token = getattr(tokenizer, "image_token", None) or "<image>"
    if image_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # what LLaVA does for Vicuna
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    image_token_id = tokenizer.convert_tokens_to_ids(image_token)
    vc = vision.config
    num_image_tokens = (vc.image_size // vc.patch_size) ** 2 + (vision_feature_select_strategy == "full")
    config = LlavaConfig(
        vision_config=vc.to_dict(),
        text_config=lm.config.to_dict(),
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=vision_feature_select_strategy,
        image_seq_length=num_image_tokens,
        tie_word_embeddings=lm.config.tie_word_embeddings,
    )
    # Build the shell on the meta device, then plug in the loaded parts: no second copy of a 7B LM.
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower = vision
    model.model.language_model = lm.model
    model.lm_head = lm.lm_head
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.model.multi_modal_projector = LlavaMultiModalProjector(config)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vc.patch_size,
        vision_feature_select_strategy=vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS token
        image_token=image_token,
    )
    return model, processor


def projector_parameters(model: LlavaForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The projector's tensors under transformers' keys (`model.multi_modal_projector.linear_1.weight`)."""
    return {HF_PREFIX + k: v for k, v in model.model.multi_modal_projector.state_dict().items()}


def to_llava_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' projector keys -> LLaVA's (`model.mm_projector.0.weight`), as its scripts load them."""
    out = {}
    for key, value in state.items():
        layer, _, param = key.removeprefix(HF_PREFIX).partition(".")
        out[f"{LLAVA_KEYS[layer]}.{param}"] = value
    return out


def from_llava_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LLaVA's projector keys -> transformers' (the inverse of `to_llava_keys`)."""
    back = {v: k for k, v in LLAVA_KEYS.items()}
    out = {}
    for key, value in state.items():
        prefix, _, param = key.rpartition(".")
        if prefix not in back:
            raise ValueError(f"{key!r} is not a LLaVA mlp2x_gelu projector key ({sorted(back)})")
        out[f"{HF_PREFIX}{back[prefix]}.{param}"] = value
    return out


def save_projector(model: LlavaForConditionalGeneration, out: Path) -> None:
    """Write `mm_projector.bin` (LLaVA keys) and `mm_projector.safetensors` (transformers keys)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in projector_parameters(model).items()}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(to_llava_keys(state), out / PROJECTOR_BIN)
    save_file(state, str(out / PROJECTOR_SAFETENSORS), metadata={"format": "pt"})
    # safetensors creates its file private (0600); give it the permissions the umask gave the .bin.
    (out / PROJECTOR_SAFETENSORS).chmod((out / PROJECTOR_BIN).stat().st_mode & 0o777)


def load_projector(model: LlavaForConditionalGeneration, path: str | Path) -> None:
    """Load a saved projector (either file) into `model`, all four tensors or an error."""

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = from_llava_keys(torch.load(path, map_location="cpu", weights_only=True))
    model.model.multi_modal_projector.load_state_dict(
        {k.removeprefix(HF_PREFIX): v for k, v in state.items()}
    )


@dataclass(frozen=True)
class PlainEncoder:
    """LLaVA's `plain` template: BOS, the image tokens, caption + "\\n"; loss only on caption + "\\n"."""

    tokenizer: Any
    image_processor: Any
    image_token_id: int
    num_image_tokens: int
    max_length: int

    def encode(self, caption: str) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of one sample; the caption is cut to fit `max_length`, never the image."""
        tok = self.tokenizer
        prefix = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + [
            self.image_token_id
        ] * self.num_image_tokens
        room = self.max_length - len(prefix)
        if room <= 0:
            raise ValueError(
                f"max_length {self.max_length} leaves no room for text after {len(prefix)} image tokens"
            )
        target = tok(caption + "\n", add_special_tokens=False).input_ids[:room]
        return prefix + target, [IGNORE_INDEX] * len(prefix) + target

    def collate(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """Right-padded batch: input_ids, attention_mask, labels (-100 on prompt, padding), pixel_values."""

        encoded = [self.encode(s.caption) for s in samples]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(samples), width), pad, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        for row, (ids, lab) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(lab)] = torch.tensor(lab)
            mask[row, : len(ids)] = 1
        images = [s.load_image() for s in samples]
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels}


def plain_encoder(
    processor: LlavaProcessor, model: LlavaForConditionalGeneration, *, max_length: int
) -> PlainEncoder:
    """The encoder matching `model`'s image token and number of image features."""
    return PlainEncoder(
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
        image_token_id=model.config.image_token_id,
        num_image_tokens=model.config.image_seq_length,
        max_length=max_length,
    )


@dataclass(frozen=True)
class Schedule:
    """How a dataset of `records` maps onto ranks, micro-batches and optimizer steps."""

    records: int
    per_device: int
    world: int
    accumulation: int
    epochs: int

    @property
    def micro_batches_per_epoch(self) -> int:
        """Rounded up to a multiple of the world size: every rank takes the same number of micro-batches."""
        m = math.ceil(self.records / self.per_device)
        return math.ceil(m / self.world) * self.world

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / (self.world * self.accumulation))

    def micro_steps(self, step: int) -> int:
        """Micro-batches each rank runs in `step` of an epoch (the last step of an epoch may be shorter)."""
        done = step * self.world * self.accumulation
        return min(self.accumulation, (self.micro_batches_per_epoch - done) // self.world)


def _padded(source: SampleSource, total: int) -> Iterator[Sample]:
    """`total` samples: the source, then its start again (as DistributedSampler pads) so batches are full."""
    emitted = 0
    while emitted < total:
        for sample in source:
            if emitted == total:
                return
            yield sample
            emitted += 1


class RankBatches(IterableDataset):
    """One rank's collated micro-batches for one epoch, dealt round-robin to the DataLoader's workers."""

    def __init__(self, source: SampleSource, encoder: PlainEncoder, schedule: Schedule, rank: int):
        self.source, self.encoder, self.schedule, self.rank = source, encoder, schedule, rank

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        s = self.schedule
        batch: list[Sample] = []
        # Micro-batch m holds samples [m*B, (m+1)*B) and belongs to rank m % world; this rank's k-th
        # micro-batch goes to worker k % workers, and the DataLoader yields workers' batches back in order.
        for i, sample in enumerate(_padded(self.source, s.micro_batches_per_epoch * s.per_device)):
            micro = i // s.per_device
            if micro % s.world == self.rank and (micro // s.world) % workers == worker:
                batch.append(sample)
                if len(batch) == s.per_device:
                    yield self.encoder.collate(batch)
                    batch = []


def pretrain(config: PretrainConfig, *, progress: bool = True) -> PretrainResult:
    """Train the projector on the configured data and save it, its config and the loss log to `output_dir`."""
    from accelerate import Accelerator
    from transformers import get_cosine_schedule_with_warmup

    mixed = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[config.precision]
    accelerator = Accelerator(mixed_precision=mixed)
    world, rank = accelerator.num_processes, accelerator.process_index
    per_step = config.per_device_batch_size * world
    if config.global_batch_size % per_step:
        raise ValueError(
            f"global batch {config.global_batch_size} is not a multiple of per-device batch "
            f"{config.per_device_batch_size} x {world} processes"
        )
    accumulation = config.global_batch_size // per_step
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[config.precision]
    specs = [DataSpec.parse(d) for d in config.data]
    records = len(open_training_data(specs, seed=config.seed))

    torch.manual_seed(config.seed)
    model, processor = build_llava(
        vision_tower=config.vision_tower,
        language_model=config.language_model,
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        dtype=dtype,
        seed=config.seed,
    )
    model.requires_grad_(False)
    projector = model.model.multi_modal_projector
    projector.float().requires_grad_(True)  # trained in fp32; autocast runs the matmuls in `precision`
    if config.gradient_checkpointing:
        model.model.language_model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    model.train()

    schedule = Schedule(records, config.per_device_batch_size, world, accumulation, config.epochs)
    total_steps = schedule.steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup = math.ceil(total_steps * config.warmup_ratio)  # as transformers' Trainer rounds it
    optimizer = torch.optim.AdamW(
        projector.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    # Stepped by hand once per optimizer step (accelerate's wrapper would step it once per process).
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    encoder = plain_encoder(processor, accelerator.unwrap_model(model), max_length=config.max_length)

    out = Path(config.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / LOG_JSONL).write_text("", encoding="utf-8")
    losses: list[float] = []
    step = 0
    for epoch in range(config.epochs):
        data = RankBatches(open_training_data(specs, seed=config.seed, epoch=epoch), encoder, schedule, rank)
        loader = DataLoader(data, batch_size=None, num_workers=config.num_workers)
        batches = iter(loader)
        for epoch_step in range(schedule.steps_per_epoch):
            if step == total_steps:
                break
            n_micro = schedule.micro_steps(epoch_step)
            step_loss = torch.zeros((), device=accelerator.device)
            for micro in range(n_micro):
                batch = {k: v.to(accelerator.device) for k, v in next(batches).items()}
                sync = micro == n_micro - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                    loss = model(**batch).loss / n_micro
                    accelerator.backward(loss)
                step_loss += loss.detach()
            lr = scheduler.get_last_lr()[0]  # the rate this step used
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            mean = accelerator.reduce(step_loss, reduction="mean").item()
            losses.append(mean)
            step += 1
            if accelerator.is_main_process:
                entry = {"step": step, "epoch": epoch, "loss": mean, "lr": lr}
                with open(out / LOG_JSONL, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
                if progress and (step % config.log_every == 0 or step == total_steps):
                    print(f"step {step}/{total_steps} loss {mean:.4f} lr {entry['lr']:.3g}", flush=True)
        del batches, loader  # ends this epoch's workers before the next epoch starts its own

    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        save_projector(trained, out)
        processor.save_pretrained(out / "processor")
        resolved = {
            **config.model_dump(),
            "derived": {
                "records": records,
                "processes": world,
                "gradient_accumulation_steps": accumulation,
                "steps": total_steps,
                "warmup_steps": warmup,
                "num_image_tokens": trained.config.image_seq_length,
                "image_token_id": trained.config.image_token_id,
                "mm_projector_type": "mlp2x_gelu",
                "mm_hidden_size": trained.config.vision_config.hidden_size,
                "final_loss": losses[-1] if losses else None,
            },
        }
        (out / CONFIG_JSON).write_text(json.dumps(resolved, indent=2) + "\n", encoding="utf-8")
    return PretrainResult(losses, total_steps, accumulation, records, out, trained)
