"""Preflight: everything the planned stages will need, checked before any of them does work.

A recipe that names a model missing from the cache, an input that does not exist or an extra that is not
installed would otherwise fail in the stage that uses it, after the stages before it ran (at paper scale:
GPU-hours of generated images, then a failed `score`). `preflight` checks every model the stages will load
(builtin name known; local folder holding a config and weights; hub id in the local HF cache, or answering
one request when online), the judge endpoint, every input file, that the run and export folders can be
written, and the optional extras the config needs; it reports all problems at once, each with its fix.
Nothing here downloads, builds or loads a model, and nothing imports torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthvlm.config import JudgeConfig, RunConfig, VqaScoreConfig
from synthvlm.core import fsio
from synthvlm.core.errors import UserError
from synthvlm.models import registry

HUB_TIMEOUT = 5.0
"""Seconds the one request to the hub (online, model not cached) or to the judge endpoint may take."""

PAPER_MODEL_STEPS = ("perplexity", "alignment", "judge")
"""The SynthVLM paper's model-based curation steps (KenLM perplexity, CLIP/BLIP alignment, LLaMA3 judge):
`curate.recipe: synthvlm` runs only its rule filters, these run when configured."""

_RECIPE_FIX = "fix the path or glob (relative paths in a recipe are relative to the recipe file)"


@dataclass(frozen=True)
class Problem:
    """One thing that would stop a planned stage, and what to do about it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}"


@dataclass(frozen=True)
class Report:
    """Every problem found (nothing runs while there is one) and informational notes."""

    problems: tuple[Problem, ...]
    notes: tuple[str, ...]

    def message(self) -> str:
        """The problems as the error text: one line for one problem, else a header and a line each."""
        head = f"{len(self.problems)} problem(s) before any work:"
        if len(self.problems) == 1:
            return f"{head} {self.problems[0]}"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])

    def to_json(self) -> dict[str, Any]:
        return {
            "problems": [{"what": p.what, "fix": p.fix} for p in self.problems],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Model:
    """A model a stage will load: its config field, value, loader kind and offline alternative."""

    field: str
    name: str
    kind: str  # "pipeline": a diffusers pipeline; "diffusers": one diffusers model; "processor": a
    # tokenizer and image processor only; else a transformers model
    revision: str | None = None
    alternative: str | None = None  # what to set instead for an offline try


def preflight(
    config: RunConfig, *, run_dir: str | fsio.RunPath, stages: Sequence[str], executor: str
) -> Report:
    """Check what `stages` of `config` will use when run in `run_dir` with `executor`; never downloads."""
    cfg = config.resolved()
    problems = _destination("run directory", run_dir, "choose a run directory you can write to")
    if executor == "ray":
        problems += _extra("--executor ray", ("ray",), "pip install 'synthvlm[ray]'")
    if "caption" in stages:
        problems += [
            Problem(f"caption.inputs: {raw}: no such file or folder", _RECIPE_FIX)
            for raw in cfg.caption.inputs
            if not Path(raw).exists()
        ]
    if "ingest" in stages:
        if cfg.ingest.inputs or cfg.caption.inputs:  # a captioned run also reads the caption shards
            problems += _globs("ingest.inputs", cfg.ingest.inputs)
        else:
            fix = "list caption files in ingest.inputs, or pass them to `synthvlm ingest`"
            problems.append(Problem("ingest.inputs is empty", fix))
    if "curate" in stages:
        problems += _curate(cfg)
    if "generate" in stages and cfg.generate.quantize == "fp8":
        problems += _extra("generate.quantize fp8", ("torchao",), "pip install 'synthvlm[fp8]'")
    vqa = cfg.score.scorers.vqascore
    if "score" in stages and vqa is not None and vqa.backend == "openai":
        field = "score.scorers.vqascore"
        missing = _extra(f"{field} backend openai", ("openai",), "pip install 'synthvlm[curate]'")
        problems += missing or _endpoint(field, vqa)
    if "select" in stages and cfg.select.strategy == "balanced":
        problems += _extra("select.strategy balanced", ("faiss",), "pip install 'synthvlm[select]'")
    if "export" in stages and cfg.export.out is not None:
        fix = "set export.out (or `synthvlm export --out`) to a folder you can write to"
        problems += _destination("export.out", cfg.export.out, fix)
    models = _models(cfg, stages)
    if models:
        users = list(dict.fromkeys(m.field.split(".")[0] for m in models))
        needs = ("torch", "transformers", *(("diffusers",) if "generate" in users else ()))
        problems += _extra(f"the model stages {', '.join(users)}", needs, "pip install 'synthvlm[models]'")
    hub = _Hub()
    for model in models:
        problems += _model(model, hub)
    notes = [_recipe_note(cfg)] if "curate" in stages and cfg.curate.recipe == "synthvlm" else []
    return Report(tuple(problems), tuple(notes))


def _models(cfg: RunConfig, stages: Sequence[str]) -> list[_Model]:
    """Every model the stages will load, in stage order, each with the builtin that stands in for it."""
    models: list[_Model] = []

    def add(field: str, name: str | None, kind: str, revision: str | None = None, tiny: str = "") -> None:
        if name and field.split(".")[0] in stages:
            offline = f"`{field}: {registry.BUILTIN}{tiny}` for an offline try" if tiny else None
            models.append(_Model(field, name, kind, revision, offline))

    cur, gen, score = cfg.curate, cfg.generate, cfg.score
    add("caption.model", cfg.caption.model, "transformers", tiny="tiny-blip-caption")
    if cur.perplexity is not None and cur.perplexity.backend == "transformers":
        add(
            "curate.perplexity.model",
            cur.perplexity.model,
            "transformers",
            cur.perplexity.revision,
            "tiny-lm",
        )
    if cur.alignment is not None:
        add("curate.alignment.clip_model", cur.alignment.clip_model, "transformers", tiny="tiny-clip")
        add("curate.alignment.itm_model", cur.alignment.itm_model, "transformers", tiny="tiny-blip-itm")
    if cur.judge is not None and cur.judge.backend == "transformers":
        add("curate.judge.model", cur.judge.model, "transformers", tiny="tiny-lm")
    add("generate.model", gen.model, "pipeline", gen.revision, "tiny-sdxl")
    add("generate.refiner", gen.refiner, "pipeline", gen.refiner_revision, "tiny-sdxl-refiner")
    add("generate.vae", gen.vae, "diffusers")
    add("score.clip_model", score.clip_model, "transformers", score.clip_revision, "tiny-clip")
    scorers = score.scorers
    if scorers.siglip is not None:
        add(
            "score.scorers.siglip.model",
            scorers.siglip.model,
            "transformers",
            scorers.siglip.revision,
            "tiny-siglip",
        )
    if scorers.pickscore is not None:
        pick = scorers.pickscore
        add("score.scorers.pickscore.model", pick.model, "transformers", pick.revision, "tiny-clip")
        add("score.scorers.pickscore.processor", pick.processor, "processor", tiny="tiny-clip")
    if scorers.vqascore is not None and scorers.vqascore.backend == "transformers":
        vqa = scorers.vqascore
        add("score.scorers.vqascore.model", vqa.model, "transformers", vqa.revision, "tiny-llava-hf")
    if scorers.nsfw is not None:
        nsfw = scorers.nsfw
        add("score.scorers.nsfw.model", nsfw.model, "transformers", nsfw.revision, "tiny-safety-checker")
    return models


# -- inputs ---------------------------------------------------------------------------------------------


def _globs(field: str, patterns: Sequence[str]) -> list[Problem]:
    """Each pattern checked alone with ingest's own rule, so every bad one is reported."""
    from synthvlm.readers import UnreadableFileError, expand_inputs

    problems = []
    for pattern in patterns:
        try:
            expand_inputs([pattern])
        except UnreadableFileError as exc:
            problems.append(Problem(f"{field}: {exc}", _RECIPE_FIX))
    return problems


def _curate(cfg: RunConfig) -> list[Problem]:
    """The configured curate steps' inputs, extras and endpoint (their models are in `_models`)."""
    from synthvlm.steps.judge import load_template

    cur, problems = cfg.curate, []
    ppl = cur.perplexity
    if ppl is not None and ppl.backend == "kenlm":
        problems += _extra(
            "curate.perplexity backend kenlm", ("kenlm", "sentencepiece"), "pip install 'synthvlm[kenlm]'"
        )
        if not Path(ppl.model).is_file():
            problems.append(
                Problem(
                    f"curate.perplexity.model {ppl.model}: no such file",
                    "point it at the KenLM .arpa or .bin file",
                )
            )
        if ppl.tokenizer is None:
            problems.append(
                Problem(
                    "curate.perplexity: the kenlm backend needs `tokenizer`",
                    "set curate.perplexity.tokenizer to the SentencePiece .model file",
                )
            )
        elif not Path(ppl.tokenizer).is_file():
            problems.append(
                Problem(
                    f"curate.perplexity.tokenizer {ppl.tokenizer}: no such file",
                    "point it at the SentencePiece .model file",
                )
            )
    if cur.alignment is not None and cur.alignment.image_root is not None:
        if not Path(cur.alignment.image_root).is_dir():
            problems.append(
                Problem(
                    f"curate.alignment.image_root {cur.alignment.image_root}: no such folder", _RECIPE_FIX
                )
            )
    if cur.near_dup is not None:
        problems += _extra("curate.near_dup", ("datasketch",), "pip install 'synthvlm[curate]'")
    if cur.decontamination is not None:
        problems += _globs("curate.decontamination.eval_files", cur.decontamination.eval_files)
    judge = cur.judge
    if judge is not None:
        if judge.template is not None:
            try:
                load_template(judge.template)
            except OSError as exc:
                fix = f"{_RECIPE_FIX}, or drop it for the bundled Yes/No question"
                problems.append(Problem(f"curate.judge.template {judge.template}: {exc.strerror}", fix))
            except ValueError as exc:
                problems.append(Problem(str(exc), "put {caption} where the caption goes"))
        if judge.backend == "openai":
            missing = _extra("curate.judge backend openai", ("openai",), "pip install 'synthvlm[curate]'")
            problems += missing or _endpoint("curate.judge", judge)
    return problems


# -- destinations and extras ----------------------------------------------------------------------------


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _extra(feature: str, modules: Sequence[str], install: str) -> list[Problem]:
    missing = [m for m in modules if not _installed(m)]
    if not missing:
        return []
    verb = "is" if len(missing) == 1 else "are"
    return [Problem(f"{' and '.join(missing)} {verb} not installed (needed for {feature})", f"`{install}`")]


def _destination(where: str, target: str | fsio.RunPath, fix: str) -> list[Problem]:
    """A folder that must be writable, checked without creating it: else its nearest existing parent.
    A URL is checked only for its fsspec backend (writing there needs credentials and the network)."""
    from fsspec.core import split_protocol
    from fsspec.registry import known_implementations
    from fsspec.registry import registry as registered

    if isinstance(target, Path):
        protocol, path = None, str(target)
    else:
        protocol, path = split_protocol(str(target))
    if protocol not in (None, "file", "local"):
        known = known_implementations.get(protocol)
        if known is None and protocol not in registered:
            return [Problem(f"{where} {target}: no fsspec filesystem handles {protocol}://", fix)]
        module = known["class"].split(".")[0] if known else None
        return _extra(f"{where} {target}", (module,), f"pip install {module}") if module else []
    folder = Path(os.path.abspath(path))
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if existing == folder:
        if not folder.is_dir():
            return [Problem(f"{where} {folder} is a file, not a folder", fix)]
        if not os.access(folder, os.W_OK | os.X_OK):
            return [Problem(f"{where} {folder} is not writable", fix)]
        return []
    if not existing.is_dir():
        return [Problem(f"{where} {folder} cannot be created: {existing} is a file", fix)]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [Problem(f"{where} {folder} cannot be created: {existing} is not writable", fix)]
    return []


def _endpoint(field: str, endpoint: JudgeConfig | VqaScoreConfig) -> list[Problem]:
    """One request to an OpenAI-compatible endpoint (listing its models), no retries; `field` is the
    config section that names it (`curate.judge`, `score.scorers.vqascore`)."""
    import openai

    key = os.environ.get(endpoint.api_key_env)
    problems = []
    if not key:
        problems.append(
            Problem(
                f"{field}: environment variable {endpoint.api_key_env} is not set",
                "set it to the endpoint's API key (any non-empty value for a server without authentication)",
            )
        )
    client = openai.OpenAI(
        base_url=endpoint.base_url, api_key=key or "unset", timeout=HUB_TIMEOUT, max_retries=0
    )
    url = str(client.base_url).rstrip("/")
    try:
        client.models.list()
    except openai.APIConnectionError as exc:  # refused, unresolvable or timed out
        problems.append(
            Problem(
                f"{field} endpoint {url} did not answer ({type(exc).__name__})",
                f"start the server (e.g. `vllm serve {endpoint.model}`) or fix {field}.base_url",
            )
        )
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        if key:
            problems.append(
                Problem(
                    f"{field} endpoint {url} refused the key in {endpoint.api_key_env} "
                    f"(HTTP {exc.status_code})",
                    f"set {endpoint.api_key_env} to a key the endpoint accepts",
                )
            )
    except openai.APIStatusError:
        pass  # it answered; a server without a model list still serves chat completions
    return problems


# -- models ---------------------------------------------------------------------------------------------


def _model(model: _Model, hub: _Hub) -> list[Problem]:
    name = model.name
    if registry.is_builtin(name):
        try:
            registry.check_builtin(name)  # only the name: it is built locally on first use, cheaply
        except UserError as exc:
            return [Problem(f"{model.field}: {exc}", "use one of the valid names")]
        return []
    if Path(name).is_dir():
        missing = _missing_files(Path(name), model.kind)
        if not missing:
            return []
        return [
            Problem(
                f"{model.field} folder {name} has no {', '.join(missing)}",
                "point it at a complete model folder (what `save_pretrained` writes, or "
                "`hf download REPO --local-dir DIR`)",
            )
        ]
    return hub.check(model)


def _missing_files(folder: Path, kind: str) -> list[str]:
    """What the model's loader needs and `folder` lacks: its config file and weights (per component for a
    diffusers pipeline; diffusers loads safetensors only, as the engine asks)."""
    if kind == "pipeline":
        index = folder / "model_index.json"
        if not index.is_file():
            return ["model_index.json"]
        missing = []
        for component, spec in json.loads(index.read_text(encoding="utf-8")).items():
            if component.startswith("_") or not isinstance(spec, list) or None in spec:
                continue  # metadata, or an optional component left out
            sub = folder / component
            if not sub.is_dir():
                missing.append(f"{component}/")
            elif (sub / "config.json").is_file():  # a model (schedulers and tokenizers have no weights)
                missing += _missing_weights(sub, ("*.safetensors",), prefix=f"{component}/")
        return missing
    if kind == "processor":
        return [] if (folder / "preprocessor_config.json").is_file() else ["preprocessor_config.json"]
    if not (folder / "config.json").is_file():
        return ["config.json"]
    patterns = ("*.safetensors",) if kind == "diffusers" else ("*.safetensors", "*.bin")
    return _missing_weights(folder, patterns, prefix="")


def _missing_weights(folder: Path, patterns: Sequence[str], *, prefix: str) -> list[str]:
    if not any(f.is_file() for pattern in patterns for f in folder.glob(pattern)):
        return [" or ".join(prefix + p for p in patterns)]
    # A sharded checkpoint loads when one of its indexes (safetensors, or .bin where taken) has every shard.
    gaps = []
    for index in sorted(folder.glob("*.index.json")):
        if not index.name.removesuffix(".index.json").endswith(tuple(p.removeprefix("*") for p in patterns)):
            continue
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        gap = [prefix + s for s in sorted(shards) if not (folder / s).is_file()]
        if not gap:
            return []
        gaps.append(gap)
    return gaps[0] if gaps else []


class _Hub:
    """Hub ids, looked up in the local cache; when online and not cached, one request each without
    retries, and none more once the hub failed to answer."""

    def __init__(self) -> None:
        self.silent: str | None = None
        """Why the hub did not answer a request, once it did not."""

    def check(self, model: _Model) -> list[Problem]:
        from huggingface_hub import constants, is_offline_mode, try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        name, field = model.name, model.field
        try:
            validate_repo_id(name)
        except HFValidationError:
            return [
                Problem(f"{field} {name!r} is neither a folder nor a hub id", "fix the folder path or hub id")
            ]
        probe = {"pipeline": "model_index.json", "processor": "preprocessor_config.json"}.get(
            model.kind, "config.json"
        )
        download = f"`hf download {name}{f' --revision {model.revision}' if model.revision else ''}`"
        fix = f"{download}, or {model.alternative}" if model.alternative else download
        cached = try_to_load_from_cache(name, probe, revision=model.revision)
        if isinstance(cached, str):
            missing = _missing_files(Path(cached).parent, model.kind)
            if not missing:
                return []
            what = f"{field} {name!r} is in the Hugging Face cache without {', '.join(missing)}"
            return [Problem(what, f"{download} completes it")]
        what = (
            f"{field} {name!r} is not a local folder nor in the Hugging Face cache ({constants.HF_HUB_CACHE})"
        )
        if is_offline_mode():
            return [Problem(f"{what}, and offline mode is on", fix)]
        if self.silent is None:
            answered, reason = _ask_hub(name, probe, model.revision)
            if answered:
                return [] if reason is None else [Problem(f"{what}, and {reason}", fix)]
            self.silent = reason
        return [Problem(f"{what}, and the hub did not answer ({self.silent})", fix)]


def _ask_hub(name: str, probe: str, revision: str | None) -> tuple[bool, str | None]:
    """(whether the hub answered, why it cannot serve `probe` of `name`, or None when it can)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        get_hf_file_metadata(hf_hub_url(name, probe, revision=revision), timeout=HUB_TIMEOUT)
    except GatedRepoError:
        return True, "it is gated: accept its terms on the hub, then log in with `hf auth login`"
    except RepositoryNotFoundError:
        return True, "the hub has no such repo (or it is private: log in with `hf auth login`)"
    except RevisionNotFoundError:
        return True, f"the hub has no revision {revision!r} of it"
    except EntryNotFoundError:
        return True, f"the repo has no {probe}, which its loader needs"
    except HfHubHTTPError as exc:
        return True, f"the hub answered HTTP {exc.response.status_code}"
    except Exception as exc:  # noqa: BLE001 -- the transport's errors (refused, DNS, timeout) are the hub
        # client's own classes; any of them means the hub did not answer
        return False, type(exc).__name__
    return True, None


# -- notes ----------------------------------------------------------------------------------------------


def _recipe_note(cfg: RunConfig) -> str:
    configured = [s for s in PAPER_MODEL_STEPS if getattr(cfg.curate, s) is not None]
    skipped = [s for s in PAPER_MODEL_STEPS if s not in configured]
    note = (
        "curate.recipe synthvlm runs the paper's rule filters; of the paper's model steps, "
        f"configured: {', '.join(configured) or 'none'}; skipped: {', '.join(skipped) or 'none'}"
    )
    if skipped:
        note += f" (set {', '.join('curate.' + s for s in skipped)} to run them)"
    return note
