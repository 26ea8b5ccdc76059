"""The run config: YAML in, validated pydantic models out, presets applied as data."""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from synthvlm.core import schema
from synthvlm.core.errors import UserError
from synthvlm.generate.families import FAMILIES, Family
from synthvlm.generate.presets import PRESETS


class _Model(BaseModel):
    # Attribute docstrings become field descriptions (RunConfig.model_json_schema() carries them).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class IngestConfig(_Model):
    """How caption files are read into the pool."""

    inputs: list[str] = Field(default_factory=list)
    """Caption files or globs; relative paths in a recipe are relative to the recipe file."""
    format: str = "auto"
    """auto (by extension and first bytes) or one of json, jsonl, parquet, csv, tsv, txt, coco, flickr8k,
    llava for every input."""
    max_caption_chars: int = Field(2000, gt=0)
    """Longer captions (after whitespace collapsing) are rejected as `too_long`."""
    shard_rows: int = Field(10_000, gt=0)
    """Input records per pool shard (the unit of resume and of parallel curation)."""
    skip_bad_files: bool = False
    """Record a file that cannot be read as one `unreadable_file` rejected row instead of stopping."""
    limit: int | None = Field(None, gt=0)
    """Take only the first N records of the inputs (in input order), to try a recipe on a sample."""


class FilterSpec(_Model):
    """One curation filter: a registered name plus its parameters."""

    name: str
    """A registered filter (docs/curation.md lists them)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The filter's keyword arguments, e.g. {min_ratio: 0.25}."""


class PerplexityConfig(_Model):
    """Drop captions a causal LM finds too unlikely (hub id or local path; `builtin:tiny-lm` in tests)."""

    backend: Literal["transformers", "kenlm"] = "transformers"
    """transformers: a causal LM's token perplexity. kenlm: Data-Juicer's KenLM + SentencePiece perplexity
    (the paper's; `pip install 'synthvlm[kenlm]'`)."""
    model: str
    """transformers: hub id or folder. kenlm: path of the .arpa/.bin model."""
    tokenizer: str | None = None
    """kenlm only (required there): path of the SentencePiece .model file."""
    revision: str | None = None
    """transformers only: hub revision (branch, tag or commit) to pin."""
    max_perplexity: float = Field(gt=0)
    """Captions above this perplexity are dropped (the paper keeps <= 5500 with KenLM)."""
    batch_size: int = Field(32, gt=0)
    """Captions per forward pass (transformers)."""
    max_tokens: int = Field(128, gt=1)
    """Captions are cut to this many tokens before scoring (transformers)."""
    device: str = "auto"
    """auto (a CUDA GPU when present, else the CPU), cpu, cuda, cuda:1, ..."""


class AlignmentConfig(_Model):
    """Original-pair alignment: CLIP cosine and BLIP image-text matching against the source image."""

    clip_model: str | None = "openai/clip-vit-base-patch32"
    """CLIP hub id or folder; null skips the CLIP check."""
    min_clip: float = 0.28
    """Minimum raw cosine between the caption and its original image."""
    itm_model: str | None = "Salesforce/blip-itm-base-coco"
    """BLIP image-text-matching hub id or folder; null skips the ITM check."""
    min_itm: float = Field(0.8, ge=0, le=1)
    """Minimum BLIP ITM match probability."""
    image_root: str | None = None
    """Folder that relative image references of the captions are resolved against."""
    batch_size: int = Field(16, gt=0)
    """Pairs per forward pass."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1, ..."""


class NearDupConfig(_Model):
    """MinHash LSH near-duplicate removal over normalised text; the first caption of a cluster stays."""

    shingle: Literal["word", "char"] = "word"
    """Shingles of words or of characters."""
    shingle_size: int = Field(3, gt=0)
    """Words (or characters) per shingle."""
    num_perm: int = Field(128, gt=1)
    """MinHash permutations."""
    threshold: float = Field(0.8, gt=0, lt=1)
    """Estimated Jaccard similarity above which two captions are near-duplicates."""
    seed: int = 1
    """Seed of the MinHash permutations."""


class DecontamConfig(_Model):
    """Drop captions sharing word n-grams with evaluation captions (files any ingest reader reads)."""

    eval_files: list[str] = Field(min_length=1)
    """Evaluation caption files (any format ingest reads)."""
    format: str = "auto"
    """Their format, as ingest.format."""
    ngram: int = Field(8, gt=0)
    """Words per n-gram."""
    threshold: float = Field(0.5, gt=0, le=1)
    """Drop a caption when at least this fraction of its n-grams occur in the evaluation captions."""


class JudgeConfig(_Model):
    """LLM Yes/No judge: an OpenAI-compatible endpoint or a local transformers model, answers cached."""

    backend: Literal["openai", "transformers"] = "openai"
    """openai: any OpenAI-compatible chat endpoint (vLLM, TGI, ...). transformers: a local causal LM."""
    model: str
    """Model name at the endpoint, or hub id / folder for transformers."""
    base_url: str | None = None
    """Endpoint URL (openai backend); null: the client's default."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (never stored in the run)."""
    template: str | None = None
    """Prompt template file containing {caption}; null: the bundled Yes/No question."""
    concurrency: int = Field(8, gt=0)
    """Requests in flight (openai backend)."""
    timeout: float = Field(60.0, gt=0)
    """Seconds per request (openai backend)."""
    max_retries: int = Field(4, ge=0)
    """Retries of a request that timed out, was rate-limited or hit a server error."""
    backoff: float = Field(1.0, ge=0)
    """Seconds before the first retry, doubling after each."""
    max_new_tokens: int = Field(4, gt=0)
    """Tokens generated per answer."""
    batch_size: int = Field(8, gt=0)
    """Prompts per forward pass (transformers backend)."""
    device: str = "auto"
    """transformers backend: auto, cpu, cuda, cuda:1, ..."""


class CurateConfig(_Model):
    """Caption curation: a recipe of filters, exact dedup, then the optional model and set-based steps."""

    recipe: str = "synthvlm"
    """Named filter list: synthvlm (the paper's Table 1) or none."""
    filters: list[FilterSpec] | None = None
    """Explicit filter list, replacing the recipe's."""
    dedup: bool = True
    """Drop exact duplicates of normalised caption text; the first occurrence stays."""
    perplexity: PerplexityConfig | None = None
    """Optional: the perplexity filter."""
    alignment: AlignmentConfig | None = None
    """Optional: CLIP/BLIP alignment with each caption's original image."""
    near_dup: NearDupConfig | None = None
    """Optional: MinHash near-duplicate removal."""
    decontamination: DecontamConfig | None = None
    """Optional: n-gram overlap with evaluation sets."""
    judge: JudgeConfig | None = None
    """Optional: the LLM Yes/No quality judge."""


class CaptionConfig(_Model):
    """Captions for real images from an image-to-text model (BLIP-2 in the paper); ingest reads its shards."""

    inputs: list[str] = Field(default_factory=list)
    """Image folders, .tar files or Parquet files with an image column."""
    model: str = "Salesforce/blip2-opt-2.7b"
    """Image-to-text hub id or folder."""
    prompt: str | None = None
    """Text the caption starts from (decoder-only captioners echo it; it is removed)."""
    batch_size: int = Field(8, gt=0)
    """Images per forward pass."""
    max_new_tokens: int = Field(30, gt=0)
    """Caption length limit in tokens."""
    shard_rows: int = Field(1000, gt=0)
    """Images per output shard."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1, ..."""


def _unset_when_none(value: Any) -> bool:
    return value is None


class GeneratorSettings(_Model):
    """How one generator makes images: a preset (its family and the model card's settings) plus overrides.
    Fields left unset take the preset's value; a family's own fields exist only in its presets."""

    preset: str = "sdxl"
    """A preset (`synthvlm.generate.presets.PRESETS`): sdxl (the paper: base + refiner, 60 steps, guidance
    20), sdxl-base, sdxl-lightning, sd3-medium, sd35-large, sd35-large-turbo, sd35-medium, flux1-schnell,
    flux1-dev, flux2-klein-4b, sana-1600m, sana-sprint, pixart-sigma, qwen-image, z-image-turbo, and the
    offline tiny-* models. It names the family whose pipeline runs."""
    model: str | None = None
    """Diffusers pipeline of the preset's family: hub id, folder or builtin name."""
    revision: str | None = None
    """Hub revision of `model` to pin."""
    refiner: str | None = None
    """sdxl only: a refiner pipeline that finishes the last (1 - high_noise_frac) of the schedule."""
    refiner_revision: str | None = None
    """Hub revision of `refiner` to pin."""
    steps: int | None = Field(None, gt=0)
    """Denoising steps (base and refiner together)."""
    guidance: float | None = None
    """The family's guidance scale, in the family's meaning (docs/generators.md): classifier-free guidance
    (sdxl, sd3, sana, pixart-sigma, qwen-image; z-image above 0), embedded guidance (flux1, sana-sprint), or
    ignored by step-distilled checkpoints (flux2-klein)."""
    true_cfg: float | None = Field(None, gt=0, exclude_if=_unset_when_none)
    """flux1 only: real classifier-free guidance beside the embedded guidance (on above 1, with the
    negative prompt; twice the cost per step)."""
    high_noise_frac: float | None = Field(None, gt=0, lt=1)
    """sdxl only: fraction of the schedule the base model runs before handing latents to the refiner."""
    width: int | None = Field(None, gt=0, multiple_of=8)
    """Image width in pixels (a multiple of 8; some families need 16 or 32)."""
    height: int | None = Field(None, gt=0, multiple_of=8)
    """Image height in pixels (as width)."""
    max_sequence_length: int | None = None
    """Prompt tokens the family's sequence text encoder keeps (T5, Gemma, Qwen); not for sdxl (CLIP's 77)."""
    negative_prompt: str | None = None
    """Negative prompt for every image, for families that take one while classifier-free guidance is on
    (unset: the preset's, else none)."""
    batch_size: int | None = Field(None, gt=0)
    """Images per pipeline call, a ceiling: a call that runs out of device memory is split. The sdxl presets
    use 8 (on an H100, SDXL at 1024² takes 1.29 s/image at batch 8, 1.94x a batch-1 diffusers loop; batch 16
    adds nothing unless compiled)."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """auto: bfloat16 on CUDA (float16 on GPUs without bfloat16), float32 elsewhere. Components a family
    knows to overflow in float16 stay in bfloat16 (docs/generators.md)."""
    vae: str | None = None
    """Replacement VAE (hub id or folder) of the family's VAE class, e.g. madebyollin/sdxl-vae-fp16-fix."""
    denoiser: str | None = Field(None, exclude_if=_unset_when_none)
    """Replacement denoiser weights (UNet or transformer) loaded into the pipeline's own denoiser config: a
    folder, a local .safetensors file, or a hub file `REPO_ID/FILE.safetensors` (sdxl-lightning's UNet)."""
    scheduler: dict[str, Any] | None = Field(None, exclude_if=_unset_when_none)
    """Scheduler config overrides, e.g. {timestep_spacing: trailing} (sdxl-lightning)."""
    compile: bool | Literal["max-autotune"] = False
    """torch.compile of the denoiser on CUDA: slower first batch, faster steady state. true: torch's default
    mode (the SDXL UNet 1.3x at batch 16 on an H100; transformers compile whole). "max-autotune": QKV
    projections fused where the family's attention fuses, denoiser and VAE decoder compiled whole with
    autotuned kernels; minutes per worker. Each batch size compiles once: keep `images_per_shard` a
    multiple of `batch_size`."""
    quantize: Literal["fp8"] | None = None
    """"fp8": the denoiser's linear layers in FP8 (e4m3) with per-row dynamic scales (torchao). Needs a CUDA
    GPU of compute capability 8.9+ (H100, L40S, RTX 4090), bfloat16, and `pip install 'synthvlm[fp8]'`.
    Meant with `compile`: torchao fuses the activation scaling into the matmuls only in compiled graphs."""

    @model_validator(mode="after")
    def _known_preset(self) -> GeneratorSettings:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown generate preset {self.preset!r}; valid: {sorted(PRESETS)}")
        if self.model is None and "model" not in PRESETS[self.preset].settings:
            raise ValueError("generate.model is not set and the preset does not set it")
        return self

    @property
    def family(self) -> Family:
        """The generator family of this generator's preset."""
        return FAMILIES[PRESETS[self.preset].family]

    def resolved(self) -> Self:
        """This generator with every field it leaves unset taken from its preset (explicit fields win)."""
        settings = {"negative_prompt": "", **PRESETS[self.preset].settings}
        return self.model_copy(update={k: v for k, v in settings.items() if getattr(self, k) is None})


GENERATOR_FIELDS = frozenset(GeneratorSettings.model_fields)
"""The fields that describe one generator (a pool's entries each have their own)."""


class GeneratorConfig(GeneratorSettings):
    """One generator of a mixed candidate pool (`generate.generators`)."""

    name: str | None = None
    """Its name in provenance, status and the report; default: its preset's name."""
    share: float | None = Field(None, gt=0, le=1)
    """Its share of the candidates; give every entry one (adding up to 1) or none (equal shares)."""

    @property
    def label(self) -> str:
        """The name this generator goes by: `name`, else the preset's."""
        return self.name if self.name is not None else self.preset


class GenerateConfig(GeneratorSettings):
    """Text-to-image generation: one generator (the fields of `GeneratorSettings` here), or a mixed pool
    (`generators`). Fields left unset take the preset's value."""

    generators: list[GeneratorConfig] | None = Field(None, min_length=1, exclude_if=_unset_when_none)
    """A mixed candidate pool: generator entries (a preset or a model plus overrides, a `share` each). Each
    caption's candidates are spread over them deterministically; leave the generator fields above unset."""
    candidates_per_caption: int = Field(1, gt=0)
    """Images per caption, each with its own seed; select keeps the best (best_of_n)."""
    images_per_shard: int = Field(1000, gt=0)
    """Images per output tar shard (the unit of resume and of work given to a worker)."""
    device: str = "auto"
    """auto (cuda when present, else cpu), cpu, cuda, cuda:1, ..."""
    image_format: Literal["jpg", "png", "webp"] = "jpg"
    """How generated images are stored in the shards."""
    jpeg_quality: int = Field(95, ge=1, le=100)
    """Quality of stored JPEGs."""
    max_attempts: int = Field(3, gt=0)
    """Tries per image: a NaN or constant image is regenerated with the next attempt's seed."""

    @model_serializer(mode="wrap")
    def _pool_only(self, handler: Any) -> dict[str, Any]:
        # With a pool the top-level generator fields mean nothing (the validator keeps them unset): leave
        # them out of config.yaml, fingerprints and cards.
        data = handler(self)
        if self.generators is None:
            return data
        return {k: v for k, v in data.items() if k not in GENERATOR_FIELDS}

    @model_validator(mode="after")
    def _one_pool(self) -> GenerateConfig:
        if self.generators is None:
            return self
        flat = sorted(self.model_fields_set & GENERATOR_FIELDS)
        if flat:
            raise ValueError(
                f"{', '.join(flat)} set beside generators: with a pool, set them inside each generator entry"
            )
        names = [g.label for g in self.generators]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"two generators are named {', '.join(twice)}: give each entry its own `name`")
        shares = [g.share for g in self.generators]
        if any(s is None for s in shares) and any(s is not None for s in shares):
            raise ValueError("generators[].share: give every entry a share, or none (equal shares)")
        if shares[0] is not None and abs(math.fsum(shares) - 1) > SHARE_TOLERANCE:
            raise ValueError(f"generators[].share: the shares add up to {math.fsum(shares):g}, not 1")
        return self

    def pool(self) -> list[GeneratorConfig]:
        """The generators, in config order, each with its share (equal when none is given) and its preset's
        values filled in; one entry named after the preset when `generators` is not set."""
        if self.generators is None:
            settings = self.model_dump(include=set(GENERATOR_FIELDS), exclude_unset=False)
            return [GeneratorConfig(**settings, share=1.0).resolved()]
        equal = 1 / len(self.generators)
        return [g.model_copy(update={"share": g.share or equal}).resolved() for g in self.generators]

    def generator(self, label: str) -> GeneratorConfig:
        """The pool's generator called `label`."""
        return next(g for g in self.pool() if g.label == label)

    @property
    def mixed(self) -> bool:
        """Whether candidates come from more than one generator (then each row names its generator)."""
        return self.generators is not None and len(self.generators) > 1

    def resolved(self) -> GenerateConfig:
        """This config with every generator field left unset taken from its preset (explicit fields win)."""
        if self.generators is None:
            return super().resolved()
        return self.model_copy(update={"generators": [g.resolved() for g in self.generators]})


SHARE_TOLERANCE = 1e-6
"""How far generator shares may add up from 1 (decimal shares such as 0.1 + 0.2 + 0.7 are not exact)."""


class SiglipScorerConfig(_Model):
    """SigLIP's own pair probability: sigmoid(logit_scale * cos + logit_bias)."""

    model: str = "google/siglip-so400m-patch14-384"
    """SiglipModel hub id, folder or builtin name."""
    revision: str | None = None
    """Hub revision of `model` to pin."""


class PickScoreConfig(_Model):
    """PickScore: logit_scale * cos of a CLIPModel tuned on human preferences, as its authors compute it."""

    model: str = "yuvalkirstain/PickScore_v1"
    """CLIPModel checkpoint."""
    processor: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    """Where the tokenizer and image processor come from (PickScore ships none of its own)."""
    revision: str | None = None
    """Hub revision of `model` to pin."""


VQA_TEMPLATE = 'Does this figure show "{caption}"? Please answer yes or no.'
"""The VQAScore question (t2v_metrics' default)."""


class VqaScoreConfig(_Model):
    """VQAScore: P(answer) of a vision-language model asked whether the image shows the caption, read from
    the next-token distribution (never from sampled text)."""

    backend: Literal["transformers", "openai"] = "transformers"
    """transformers: a local image-text-to-text model. openai: an OpenAI-compatible vision endpoint that
    returns logprobs (vLLM serving Qwen2.5-VL, ...)."""
    model: str = "llava-hf/llava-1.5-7b-hf"
    """Hub id, folder or builtin name (transformers), or the model name at the endpoint (openai)."""
    revision: str | None = None
    """Hub revision of `model` to pin (transformers)."""
    template: str = VQA_TEMPLATE
    """The question; `{caption}` is replaced by the caption."""
    answer: str = "Yes"
    """The answer whose probability is the score."""
    batch_size: int = Field(8, gt=0)
    """Pairs per forward pass (transformers)."""
    base_url: str | None = None
    """Endpoint URL (openai); null: the client's default."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (never stored in the run)."""
    concurrency: int = Field(8, gt=0)
    """Requests in flight (openai)."""
    timeout: float = Field(60.0, gt=0)
    """Seconds per request (openai)."""
    max_retries: int = Field(4, ge=0)
    """Retries of a request that timed out, was rate-limited or hit a server error (openai)."""
    backoff: float = Field(1.0, ge=0)
    """Seconds before the first retry, doubling after each (openai)."""
    top_logprobs: int = Field(20, gt=0, le=20)
    """Alternatives the endpoint returns for the first token; an answer not among them scores 0 (openai)."""


class NsfwConfig(_Model):
    """The Stable Diffusion safety checker: a flag and the largest concept margin per image."""

    model: str = "CompVis/stable-diffusion-safety-checker"
    """StableDiffusionSafetyChecker checkpoint (with its CLIP image processor)."""
    revision: str | None = None
    """Hub revision of `model` to pin."""


AESTHETIC_WEIGHTS = "camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth"
"""The LAION improved aesthetic predictor trained on SAC+LOGOS+AVA1 (a hub mirror of the authors' file)."""


class AestheticConfig(_Model):
    """The LAION improved aesthetic predictor: an MLP on the L2-normalised CLIP image embedding; the caption
    does not enter the score."""

    clip_model: str = "openai/clip-vit-large-patch14"
    """CLIPModel whose image embedding the MLP reads (hub id, folder or builtin name); the LAION weights
    were trained on this one's (ViT-L/14, 768-d)."""
    clip_revision: str | None = None
    """Hub revision of `clip_model` to pin."""
    weights: str = AESTHETIC_WEIGHTS
    """The MLP's state dict: a local `.pth` (torch, loaded with weights_only) or `.safetensors` file, a hub
    file as `REPO_ID/FILENAME` (from the HF cache; fetched only when online), or a folder or builtin name
    holding `model.safetensors`."""


class ScorersConfig(_Model):
    """Pair scorers beyond CLIPScore and SSIM, each opt-in: give its section (`{}` takes the defaults)."""

    siglip: SiglipScorerConfig | None = None
    """Column `siglip`."""
    pickscore: PickScoreConfig | None = None
    """Column `pickscore`."""
    vqascore: VqaScoreConfig | None = None
    """Column `vqascore`."""
    nsfw: NsfwConfig | None = None
    """Columns `nsfw` (flag) and `nsfw_margin`; select drops flagged pairs as `unsafe`."""
    # Left out of dumps while off, so the score fingerprints of runs made before it existed still match.
    aesthetic: AestheticConfig | None = Field(None, exclude_if=lambda value: value is None)
    """Column `aesthetic` (the image alone: about 1 to 10 with the default weights)."""

    def enabled(self) -> list[str]:
        """The configured scorers' names, in the order their columns are written."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class ScoreConfig(_Model):
    """CLIPScore + lambda * SSIM, as the paper's code computes them."""

    clip_model: str = "openai/clip-vit-base-patch32"
    """CLIP hub id or folder."""
    clip_revision: str | None = None
    """Hub revision of `clip_model` to pin."""
    prefix: str = "A photo depicts "
    """Text put before each caption for CLIPScore."""
    ssim_size: int = Field(768, gt=0)
    """SSIM's reference: the image resized to this square size (bilinear, grayscale; docs/metrics.md)."""
    ssim_low: int = Field(336, gt=0)
    """SSIM's degraded copy: the reference resized down to this size and back up."""
    ssim_data_range: Literal[255, 2] = 255
    """SSIM's data_range. 255: the exact SSIM of the uint8 grayscale images. 2: as the paper's numbers
    (Table 4: the images as floats in [0, 255] with scikit-image's pre-0.20 float range; docs/metrics.md).
    Left out of the score fingerprint when 255, so runs made before the field existed still match."""
    ssim_weight: float = 0.5
    """lambda in weighted = clip + lambda * ssim."""
    batch_size: int = Field(32, gt=0)
    """Images per CLIP forward pass."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1, ..."""
    scorers: ScorersConfig = Field(default_factory=ScorersConfig)
    """Opt-in pair scorers, each adding its columns to the score table (docs/metrics.md)."""
    embeddings: bool = True
    """Keep each candidate's CLIP image and text embeddings (float16) in score/embeddings/, so balanced
    selection and the reference gap never recompute them."""


class BalancedConfig(_Model):
    """Coverage-aware selection: SemDeDup inside sub-clusters of k-means clusters of the image embeddings,
    then a cap per cluster (docs/metrics.md)."""

    clusters: int = Field(100, gt=0)
    """k-means clusters of the candidates' CLIP image embeddings (at most one per candidate)."""
    epsilon: float = Field(0.05, ge=0, lt=1)
    """A candidate whose image cosine to a better-ranked one in its sub-cluster (at most 8,192 rows of its
    cluster) exceeds 1 - epsilon is dropped as `near_duplicate_image`."""
    iterations: int = Field(20, gt=0)
    """k-means iterations."""


class SelectConfig(_Model):
    """Best-of-N per caption, then a global cut: exactly one of top_k, fraction, threshold."""

    key: str | dict[str, float] = "weighted"
    """Score column to rank by, or a weighted sum of columns (`{clip: 1.0, ssim: 0.5}` is `weighted`);
    descending, ties by caption_id, then candidate_index."""
    strategy: Literal["top", "balanced"] = "top"
    """top: the K best by key. balanced: near-duplicate images dropped and a cap per cluster (`balanced`)."""
    balanced: BalancedConfig = Field(default_factory=BalancedConfig)
    """Settings of the balanced strategy."""
    best_of_n: bool = True
    """Keep only each caption's best candidate before the global cut."""
    top_k: int | None = Field(None, gt=0)
    """Keep the K best (default 100000 when no cut is given)."""
    fraction: float | None = Field(None, gt=0, le=1)
    """Keep this fraction of the ranked rows (rounded up)."""
    threshold: float | None = None
    """Keep rows whose key is at least this value."""

    @model_validator(mode="after")
    def _one_cut(self) -> SelectConfig:
        given = [k for k in CUTS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"select takes one of top_k, fraction, threshold; got {given}")
        return self

    def resolved(self) -> SelectConfig:
        """This config with its cut explicit: top_k 100000 when none is given."""
        if any(getattr(self, k) is not None for k in CUTS):
            return self
        return self.model_copy(update={"top_k": 100_000})


CUTS = ("top_k", "fraction", "threshold")
"""The select cuts, of which a config gives at most one."""


class ExportConfig(_Model):
    """Which trainer-ready formats to write, and how images are re-encoded."""

    formats: list[Literal["llava", "webdataset", "parquet", "hf"]] = Field(
        default_factory=lambda: ["llava", "webdataset", "parquet"], min_length=1
    )
    """Trainer layouts to write, each into OUT/<format>/ with a dataset card (README.md). hf: the Parquet
    shards as `data/train-*.parquet` under a card, a folder the Hugging Face hub publishes as it is."""
    out: str | None = None
    """Export folder or URL; null: RUN/export. A fresh export replaces the OUT/<format>/ folders."""
    resize: int | None = Field(None, gt=0)
    """Re-encode images at this square size (e.g. 336 for LLaVA-1.5); null keeps them as generated."""
    jpeg_quality: int = Field(95, ge=1, le=100)
    """Quality of re-encoded JPEGs (stored JPEGs are copied unchanged when not resized)."""
    instructions: list[str] | None = None
    """Human-turn instructions for LLaVA JSON, one picked per id deterministically; null: the bundled list."""
    rows_per_shard: int = Field(1000, gt=0)
    """Records per WebDataset tar / Parquet file."""

    @model_validator(mode="after")
    def _distinct_formats(self) -> ExportConfig:
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"export.formats names a format twice: {self.formats}")
        return self


class RayConfig(_Model):
    """Where the Ray executor runs and what each worker asks for; never part of any stage's fingerprint."""

    address: str | None = None
    """null: start a local Ray; "auto" or "ray://HOST:PORT": join a cluster."""
    actors: int | None = Field(None, gt=0)
    """Actors per model stage; null: one per GPU in the cluster, else 2."""
    num_cpus: float = Field(1, gt=0)
    """CPUs each actor or task asks for."""
    num_gpus: float | None = Field(None, ge=0)
    """GPUs per actor; null: 1 when the cluster has GPUs, else 0."""
    memory_gb: float | None = Field(None, gt=0)
    """Memory per actor or task, so Ray never packs too many on a node."""
    max_retries: int = Field(2, ge=0)
    """Extra attempts of a failing or lost task before the run fails."""
    threads: int | None = Field(None, gt=0)
    """torch intra-op threads per worker. CPU kernels' float results depend on it, so null takes the
    driver's count: outputs then match a local run on the driver's machine byte for byte."""


class RunConfig(_Model):
    """A whole synthvlm job; saved resolved as RUN/config.yaml."""

    seed: int = 0
    """Run seed: every image's seed derives from it, the caption id, the candidate index and the attempt."""
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    """Reading caption files into the pool."""
    curate: CurateConfig = Field(default_factory=CurateConfig)
    """Caption filtering and deduplication."""
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    """Text-to-image generation."""
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    """CLIPScore + lambda * SSIM per image."""
    select: SelectConfig = Field(default_factory=SelectConfig)
    """Best-of-N and the global cut."""
    export: ExportConfig = Field(default_factory=ExportConfig)
    """Trainer-ready layouts."""
    ray: RayConfig = Field(default_factory=RayConfig)
    """The Ray executor (never part of a stage's fingerprint)."""
    caption: CaptionConfig = Field(default_factory=CaptionConfig)
    """Optional source stage: captions for real images (`synthvlm caption`)."""

    @model_validator(mode="after")
    def _generators_fit_their_families(self) -> RunConfig:
        gen = self.generate
        problems = []
        for i, generator in enumerate(gen.pool()):
            where = "generate" if gen.generators is None else f"generate.generators.{i}"
            problems += generator.family.problems(generator, where=where)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _select_key_columns(self) -> RunConfig:
        columns = schema.score_columns(self.score.scorers.enabled())
        key = self.select.key
        named = list(key) if isinstance(key, dict) else [key]
        if not named:
            raise ValueError("select.key: a weighted sum needs at least one column")
        unknown = [c for c in named if c not in columns]
        if unknown:
            raise ValueError(
                f"select.key names {', '.join(unknown)}, which this run does not score; score columns: "
                f"{', '.join(columns)} (opt-in scorers go under score.scorers)"
            )
        if self.select.strategy == "balanced" and not self.score.embeddings:
            raise ValueError(
                "select.strategy balanced clusters the CLIP image embeddings the score stage keeps: "
                "set score.embeddings: true (its default)"
            )
        return self

    def updated(self, section: str, *, unset: Sequence[str] = (), **changes: Any) -> RunConfig:
        """A validated copy with fields of one section replaced (None values are ignored) and the fields
        named in `unset` returned to their defaults."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes and not unset:
            return self
        data = self.model_dump()
        for key in unset:
            data[section].pop(key)
        data[section].update(changes)
        return parse_config(data, origin="command line")

    def resolved(self) -> RunConfig:
        """The explicit view the stages run and fingerprint: presets and default cuts filled in."""
        resolved = {"generate": self.generate.resolved(), "select": self.select.resolved()}
        return self.model_copy(update=resolved)


def parse_config(data: dict[str, Any], *, origin: str) -> RunConfig:
    """Validate a config mapping; a user mistake becomes one readable `UserError`."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_problem(err["loc"], err["type"], err["msg"]) for err in exc.errors())
        raise UserError(f"{origin}: invalid config: {problems}") from None


def _problem(loc: tuple[int | str, ...], kind: str, message: str) -> str:
    where = ".".join(str(p) for p in loc) or "(top level)"
    if kind == "value_error" and not loc:  # a check across sections: its message names the keys
        return message.removeprefix("Value error, ")
    if kind != "extra_forbidden":
        return f"{where}: {message.removeprefix('Value error, ')}"
    # A misspelt key: name the closest key the section has, or all of them.
    model = _section_model(loc[:-1])
    if model is None:
        return f"{where}: unknown key"
    keys = sorted(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    if close:
        return f"{where}: unknown key; did you mean {'.'.join(str(p) for p in (*loc[:-1], close[0]))}?"
    return f"{where}: unknown key; valid keys here: {', '.join(keys)}"


def _section_model(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config model at a location (`curate.filters.0` -> FilterSpec); None where there is none."""
    model: type[BaseModel] | None = RunConfig
    for part in loc:
        if isinstance(part, int):  # an item of a list of models: the same model
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_config(path: str | Path) -> RunConfig:
    """Read a YAML recipe file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML{_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    _resolve_paths(data, base=path.resolve().parent)
    return parse_config(data, origin=str(path))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where PyYAML stopped (line and column, from 1) and why, with what it was parsing when it says."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or problem is None:
        return f": {str(exc).splitlines()[0]}"
    text = f" at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        text += f" ({context} that starts at line {start.line + 1}, column {start.column + 1})"
    return text


PATH_FIELDS = (
    ("ingest", "inputs"),
    ("caption", "inputs"),
    ("curate", "decontamination", "eval_files"),
    ("curate", "judge", "template"),
    ("curate", "alignment", "image_root"),
    ("curate", "perplexity", "tokenizer"),
    ("export", "out"),
)
"""Fields holding file paths (or lists of them): relative ones in a recipe are relative to the recipe file,
so a recipe works from any directory. Model fields are not among them: a relative name there is a hub id."""


def map_paths(data: dict[str, Any], fn: Callable[[str], str]) -> None:
    """Apply `fn` in place to every path a config mapping holds (the `PATH_FIELDS` that are set)."""
    for *parents, leaf in PATH_FIELDS:
        section: Any = data
        for key in parents:
            section = section.get(key) if isinstance(section, dict) else None
        if not isinstance(section, dict) or section.get(leaf) is None:
            continue
        value = section[leaf]
        section[leaf] = [fn(v) for v in value] if isinstance(value, list) else fn(value)


def _resolve_paths(data: dict[str, Any], *, base: Path) -> None:
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            return str(base / value)
        return value

    map_paths(data, resolve)


def dump_config(config: RunConfig) -> str:
    """The config as YAML, every default written out; preset fields left unset stay null (the stage
    fingerprints hold the resolved values)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
