"""The generator-family contract: what one text-to-image family's diffusers pipeline takes and how to run it.

A family says, as data, which pipeline classes it covers, what its `guidance` means, whether it takes a
negative prompt, a true CFG scale or a refiner, its size rule and its prompt limit; and, as a few small
methods, how one batch call is built, how a prompt's tokens are counted the way the pipeline counts them,
and which speed settings apply to its denoiser. The engine (`generate/engine.py`) holds no family knowledge;
config validation (`Family.problems`) and preflight read the same declarations. Nothing here imports torch
at module level.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol

from synthvlm.core.needs import Extra, Model, Need, Refusal

Guidance = Literal["cfg", "cfg-above-zero", "embedded", "true-cfg", "cfg-unless-distilled"]
"""What a family's `generate.guidance` is:

- `cfg`: the classifier-free guidance scale, on when above 1 (SDXL, SD3, SANA, PixArt-Σ);
- `cfg-above-zero`: the classifier-free guidance scale, on when above 0 (Z-Image);
- `embedded`: a guidance value the denoiser reads as an input, no second pass (FLUX.1-dev, SANA-Sprint;
  checkpoints distilled without a guidance embedding, as FLUX.1-schnell, ignore it);
- `true-cfg`: the classifier-free guidance scale the pipeline calls `true_cfg_scale`, on when above 1
  (Qwen-Image);
- `cfg-unless-distilled`: classifier-free guidance above 1, ignored by step-distilled checkpoints
  (FLUX.2-klein)."""


class Settings(Protocol):
    """What a family reads of one generator's resolved settings (`config.Settings` is one)."""

    preset: str
    model: str
    steps: int
    guidance: float
    true_cfg: float | None
    negative_prompt: str
    max_sequence_length: int | None
    width: int
    height: int
    refiner: str | None
    refiner_revision: str | None
    revision: str | None
    high_noise_frac: float | None
    vae: str | None
    denoiser: str | None
    quantize: str | None


GUIDANCE_MEANING: dict[str, str] = {
    "cfg": "classifier-free guidance scale (on above 1)",
    "cfg-above-zero": "classifier-free guidance scale (on above 0)",
    "embedded": "embedded guidance the denoiser reads (no second pass)",
    "true-cfg": "classifier-free guidance as `true_cfg_scale` (on above 1)",
    "cfg-unless-distilled": "classifier-free guidance (on above 1; ignored by step-distilled checkpoints)",
}

DENOISER_FILE = "diffusion_pytorch_model.safetensors"
"""The weights file of a diffusers model folder: what `generate.denoiser` reads when it names a folder."""

TRUNCATION_NOTICE = "The following part of your input was truncated because"
"""How every diffusers pipeline starts its warning about a cut prompt: the stage counts truncation itself
(`prompt_tokens`, `truncated`), so the engine silences these."""


class Family:
    """One text-to-image family. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    """Registry name (`FAMILIES`), what a preset's `family` names."""
    title: ClassVar[str]
    """Human name, for errors and the report."""
    pipelines: ClassVar[tuple[str, ...]]
    """diffusers pipeline classes of this family (a model folder's `model_index.json` `_class_name`)."""
    denoiser: ClassVar[Literal["unet", "transformer"]] = "transformer"
    """The pipeline attribute holding the denoiser, which compile and FP8 apply to."""
    vae_class: ClassVar[str] = "AutoencoderKL"
    """diffusers class of the VAE, for `generate.vae` replacements."""
    guidance: ClassVar[Guidance] = "cfg"
    """What `generate.guidance` means for this family (`Guidance`)."""
    negative_prompt: ClassVar[bool] = True
    """Whether the pipeline takes a negative prompt (used while classifier-free guidance is on)."""
    true_cfg: ClassVar[bool] = False
    """Whether `generate.true_cfg` exists: a classifier-free guidance scale beside embedded guidance."""
    refiner: ClassVar[bool] = False
    """Whether an SDXL-style refiner can finish the schedule (`generate.refiner`, `high_noise_frac`)."""
    refiner_pipelines: ClassVar[tuple[str, ...]] = ()
    """Pipeline classes `generate.refiner` may name."""
    size_multiple: ClassVar[int] = 16
    """Width and height must be multiples of this for the real checkpoints (VAE factor x patch size)."""
    max_sequence_length: ClassVar[int | None] = None
    """The longest `generate.max_sequence_length` the text encoder takes; None: the family has no such
    setting (CLIP's fixed 77 tokens)."""
    fuses_qkv: ClassVar[bool] = False
    """Whether `fuse_qkv_projections` fuses this denoiser's attention and leaves its output as it was
    (max-autotune applies it): measured on the tiny builds, SD3's output moves (by up to 0.025), SANA's and
    Qwen-Image's attention does not fuse, Z-Image's has no such method."""
    fullgraph: ClassVar[bool] = True
    """Whether the denoiser compiles as one graph (`fullgraph=True`); Z-Image's recompiles (its block is
    shared by its refiners and main layers), so it compiles with graph breaks allowed."""
    fixed_arguments: ClassVar[dict[str, Any]] = {}
    """Call arguments every batch passes: images at exactly width x height (no resolution binning) and the
    prompt as given (no caption cleaning, whose result depends on optional packages)."""
    tiny: ClassVar[str]
    """The `builtin:` model standing in for this family offline (tests, demos, preflight's suggestion)."""

    # -- configuration -------------------------------------------------------------------------------
    def cfg_on(self, gen: Settings) -> bool:
        """Whether classifier-free guidance (a second, negative pass) runs at these settings."""
        if self.true_cfg:
            return gen.true_cfg is not None and gen.true_cfg > 1
        threshold = {"cfg": 1.0, "cfg-above-zero": 0.0, "true-cfg": 1.0, "cfg-unless-distilled": 1.0}
        return self.guidance in threshold and (gen.guidance or 0.0) > threshold[self.guidance]

    def problems(self, gen: Settings, *, where: str) -> list[str]:
        """Settings this family cannot take, one sentence each naming its config key (`where` is the
        section: `generate` or `generate.generators.N`). `gen` is resolved (preset values filled in)."""
        out = []
        label = f"{self.name} ({self.title})"
        if not self.refiner:
            for key in ("refiner", "high_noise_frac"):
                if getattr(gen, key) is not None:
                    out.append(f"{where}.{key}: only the sdxl family takes a refiner; {label} has none")
        if gen.true_cfg is not None and not self.true_cfg:
            out.append(
                f"{where}.true_cfg: only the flux1 family takes a true CFG scale beside its guidance; "
                f"for {label} generate.guidance is the {GUIDANCE_MEANING[self.guidance]}"
            )
        if gen.negative_prompt:
            if not self.negative_prompt:
                out.append(f"{where}.negative_prompt: {label} takes no negative prompt; remove it")
            elif not self.cfg_on(gen):
                knob = "true_cfg above 1" if self.true_cfg else self._cfg_condition()
                out.append(
                    f"{where}.negative_prompt: {label} uses a negative prompt only with {knob}; at these "
                    "settings it would be ignored"
                )
        if gen.max_sequence_length is not None:
            if self.max_sequence_length is None:
                out.append(
                    f"{where}.max_sequence_length: {label} reads its prompt through CLIP's fixed 77 tokens; "
                    "remove it"
                )
            elif not 0 < gen.max_sequence_length <= self.max_sequence_length:
                out.append(
                    f"{where}.max_sequence_length: {label} takes 1 to {self.max_sequence_length} tokens, "
                    f"not {gen.max_sequence_length}"
                )
        for key in ("width", "height"):
            value = getattr(gen, key)
            if value is not None and value % self.size_multiple:
                out.append(f"{where}.{key}: {label} needs a multiple of {self.size_multiple}, not {value}")
        return out

    def _cfg_condition(self) -> str:
        return {"cfg-above-zero": "guidance above 0"}.get(self.guidance, "guidance above 1")

    def needs(self, gen: Settings, *, where: str) -> list[Need]:
        """What one generator of this family will load (`gen` resolved; `where` as in `problems`)."""
        from synthvlm.generate import families  # the registry of this package: which family a builtin is

        out: list[Need] = []
        builtin = gen.model.removeprefix("builtin:") if gen.model.startswith("builtin:") else None
        other = families.family_of_builtin(builtin) if builtin is not None else None
        if other is not None and other is not self:
            out.append(
                Refusal(
                    f"{where}.model {gen.model} is the tiny {other.name} pipeline, not a {self.name} one "
                    f"(preset {gen.preset})",
                    f"use builtin:{self.tiny}, or a {other.name} preset",
                )
            )
        out.append(
            Model(f"{where}.model", gen.model, "pipeline", gen.revision, self.tiny, pipelines=self.pipelines)
        )
        out += self._part_needs(gen, where=where)
        if gen.vae is not None:
            out.append(Model(f"{where}.vae", gen.vae, "diffusers"))
        if gen.denoiser is not None:
            out.append(Model(f"{where}.denoiser", gen.denoiser, "file", in_folder=DENOISER_FILE))
        if gen.quantize == "fp8":
            out.append(Extra(f"{where}.quantize fp8", ("torchao",), "pip install 'synthvlm[fp8]'"))
        return out

    def _part_needs(self, gen: Settings, *, where: str) -> list[Need]:
        """Further pipelines a family loads beside the model (the SDXL refiner)."""
        return []

    # -- loading -------------------------------------------------------------------------------------
    def dtypes(self, dtype: str) -> str | dict[str, str]:
        """Per-component dtype names for a requested dtype (a dict with a "default" entry where a
        component must differ); most families take one dtype throughout."""
        return dtype

    def optimize(self, pipe: Any, *, compile: bool | str, quantize: str | None) -> None:
        """Speed settings on CUDA, in place: VAE slicing; FP8 linears and torch.compile on the denoiser;
        with max-autotune, fused QKV projections where they fuse and the VAE decoder compiled too.

        Compiled graphs are static (`dynamic=False`): each batch size compiles once per worker. Transformer
        denoisers compile whole (`fullgraph=True`: they have no graph breaks); the SDXL UNet in torch's
        default mode compiles with graph breaks allowed, as it was measured.
        """
        import torch

        denoiser, vae = getattr(pipe, self.denoiser), getattr(pipe, "vae", None)
        if hasattr(vae, "enable_slicing"):
            vae.enable_slicing()  # the VAE decodes image by image: at 1024² its activations dwarf the rest
        if self.denoiser == "unet":
            denoiser.to(memory_format=torch.channels_last)  # convolutions; transformers are matmuls
        autotune = compile == "max-autotune"
        if autotune and self.fuses_qkv:
            for model in (denoiser, vae):
                if hasattr(model, "fuse_qkv_projections"):
                    model.fuse_qkv_projections()
        if quantize == "fp8":
            try:
                from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
            except ImportError as e:
                from synthvlm.core.errors import UserError

                raise UserError("generate.quantize: fp8 needs torchao: pip install 'synthvlm[fp8]'") from e
            quantize_(denoiser, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
        if autotune:
            import torch._inductor.config as inductor

            inductor.conv_1x1_as_mm = True  # 1x1 convolutions as matmuls
            inductor.coordinate_descent_tuning = True
            inductor.coordinate_descent_check_all_directions = True
            inductor.epilogue_fusion = False
            setattr(
                pipe,
                self.denoiser,
                torch.compile(denoiser, mode="max-autotune", fullgraph=self.fullgraph, dynamic=False),
            )
            if vae is not None:
                vae.decode = torch.compile(vae.decode, mode="max-autotune", fullgraph=True, dynamic=False)
        elif compile:
            # The SDXL UNet in torch's default mode as it was measured (graph breaks allowed).
            whole = self.fullgraph and self.denoiser != "unet"
            setattr(pipe, self.denoiser, torch.compile(denoiser, fullgraph=whole, dynamic=False))

    # -- one batch -----------------------------------------------------------------------------------
    def run(
        self, pipes: tuple[Any, Any], gen: Settings, prompts: Sequence[str], generators: list[Any]
    ) -> Any:
        """Float images (n, 3, height, width) in [0, 1] on the device from one call for the whole batch
        (`pipes` is (pipeline, refiner or None))."""
        pipe = pipes[0]
        return pipe(**self.call_arguments(pipe, gen, prompts), generator=generators, output_type="pt").images

    def call_arguments(self, pipe: Any, gen: Settings, prompts: Sequence[str]) -> dict[str, Any]:
        """Keyword arguments of one pipeline call for `prompts` (generators and output type added by the
        engine): only what the pipeline's signature takes, with this family's meaning of guidance."""
        n = len(prompts)
        args: dict[str, Any] = {
            "prompt": list(prompts),
            "num_inference_steps": gen.steps,
            "width": gen.width,
            "height": gen.height,
            **self.fixed_arguments,
        }
        if self.guidance == "true-cfg":
            args["true_cfg_scale"] = gen.guidance
        else:
            args["guidance_scale"] = gen.guidance
        if self.true_cfg and gen.true_cfg is not None:
            args["true_cfg_scale"] = gen.true_cfg
        if self.negative_prompt and self.cfg_on(gen):
            args["negative_prompt"] = [gen.negative_prompt] * n
        if self.max_sequence_length is not None:
            args["max_sequence_length"] = self.sequence_length(pipe, gen)
        return args

    def sequence_length(self, pipe: Any, gen: Settings) -> int:
        """The prompt limit in effect: the configured one, else the pipeline's default."""
        if gen.max_sequence_length is not None:
            return gen.max_sequence_length
        return inspect.signature(type(pipe).__call__).parameters["max_sequence_length"].default

    # -- prompt accounting ---------------------------------------------------------------------------
    def encoded_texts(self, pipe: Any, prompts: Sequence[str]) -> list[str]:
        """The exact text the pipeline hands its sequence tokenizer for each prompt (templates applied)."""
        return list(prompts)

    def sequence_tokenizer(self, pipe: Any) -> Any:
        """The tokenizer of the text encoder whose sequence the denoiser attends to."""
        return pipe.tokenizer

    def token_cap(self, pipe: Any, gen: Settings) -> int:
        """How many tokens of `encoded_texts` the pipeline keeps; the rest it cuts."""
        return self.sequence_length(pipe, gen)

    def prompt_tokens(self, pipe: Any, gen: Settings, prompts: Sequence[str]) -> list[tuple[int, bool]]:
        """Per prompt: the length of the token sequence the pipeline builds for it (special tokens and any
        template the pipeline wraps it in included), and whether the pipeline cuts it at its limit."""
        tokenizer = self.sequence_tokenizer(pipe)
        texts = self.encoded_texts(pipe, prompts)
        ids = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        cap = self.token_cap(pipe, gen)
        return [(len(seq), len(seq) > cap) for seq in ids]


def chat_texts(tokenizer: Any, prompts: Sequence[str], **template: Any) -> list[str]:
    """Prompts in a chat template as a user turn with the generation prompt, as Qwen3-encoder pipelines
    build them."""
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True, **template
        )
        for p in prompts
    ]
