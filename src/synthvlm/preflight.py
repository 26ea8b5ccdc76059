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

from synthvlm.config import RunConfig
from synthvlm.core import fsio
from synthvlm.core.errors import UserError
from synthvlm.core.needs import (
    RECIPE_FIX,
    Destination,
    Endpoint,
    Exists,
    Extra,
    Inputs,
    Model,
    Need,
    Note,
    Refusal,
)
from synthvlm.executors import EXECUTORS
from synthvlm.models import registry
from synthvlm.stages import STAGES

HUB_TIMEOUT = 5.0
"""Seconds the one request to the hub (online, model not cached) or to the judge endpoint may take."""


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


def preflight(
    config: RunConfig, *, run_dir: str | fsio.RunPath, stages: Sequence[str], executor: str
) -> Report:
    """Check what `stages` of `config` will use when run in `run_dir` with `executor`; never downloads.

    Every stage (and through it every curate step, generator family and pair scorer) and the executor
    declare their needs (`core.needs`); this walks the declarations: first everything but models, in stage
    order, then whether the model stages' libraries are installed, then every model."""
    cfg = config.resolved()
    needs: list[Need] = [
        Destination("run directory", str(run_dir), "choose a run directory you can write to"),
        *EXECUTORS[executor].needs(),
    ]
    users: list[str] = []
    for name in stages:
        declared = STAGES[name].needs(cfg)
        needs += declared
        if any(isinstance(n, Model) for n in declared):
            users.append(name)
    problems = [problem for need in needs for problem in _check(need)]
    models = [n for n in needs if isinstance(n, Model)]
    if models:
        libraries = ("torch", "transformers", *(("diffusers",) if any(_diffusers(m) for m in models) else ()))
        problems += _extra(
            f"the model stages {', '.join(users)}", libraries, "pip install 'synthvlm[models]'"
        )
    hub = _Hub()
    for model in models:
        problems += _model(model, hub)
    notes = tuple(n.text for n in needs if isinstance(n, Note))
    return Report(tuple(problems), notes)


def _diffusers(model: Model) -> bool:
    return model.kind in ("pipeline", "diffusers")


def _check(need: Need) -> list[Problem]:
    """The problems of one declared need that is not a model (models are checked after the libraries)."""
    if isinstance(need, Extra):
        return _extra(need.feature, need.modules, need.install)
    if isinstance(need, Inputs):
        return _globs(need.field, need.patterns)
    if isinstance(need, Exists):
        return _exists(need)
    if isinstance(need, Destination):
        return _destination(need.where, need.target, need.fix)
    if isinstance(need, Refusal):
        return [Problem(need.what, need.fix)]
    if isinstance(need, Endpoint):
        return _endpoint(need) if _installed("openai") else []  # else its Extra says what to install
    return []


# -- inputs ---------------------------------------------------------------------------------------------


def _globs(field: str, patterns: Sequence[str]) -> list[Problem]:
    """Each pattern checked alone with ingest's own rule, so every bad one is reported."""
    from synthvlm.readers import UnreadableFileError, expand_inputs

    problems = []
    for pattern in patterns:
        try:
            expand_inputs([pattern])
        except UnreadableFileError as exc:
            problems.append(Problem(f"{field}: {exc}", RECIPE_FIX))
    return problems


def _exists(need: Exists) -> list[Problem]:
    path = Path(need.path)
    found = {"file": path.is_file(), "folder": path.is_dir(), "any": path.exists()}[need.kind]
    if found:
        return []
    noun = {"file": "file", "folder": "folder", "any": "file or folder"}[need.kind]
    return [Problem(f"{need.label}: no such {noun}", need.fix)]


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


def _endpoint(endpoint: Endpoint) -> list[Problem]:
    """One request to an OpenAI-compatible endpoint (listing its models), no retries; `field` is the
    config section that names it (`curate.judge`, `score.scorers.vqascore`)."""
    import openai

    field = endpoint.field

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


def _model(model: Model, hub: _Hub) -> list[Problem]:
    name = model.name
    if registry.is_builtin(name):
        try:
            registry.check_builtin(name)  # only the name: it is built locally on first use, cheaply
        except UserError as exc:
            return [Problem(f"{model.field}: {exc}", "use one of the valid names")]
        return []
    if Path(name).is_dir():
        missing = _missing_files(Path(name), model)
        if missing:
            return [
                Problem(
                    f"{model.field} folder {name} has no {', '.join(missing)}",
                    "point it at a complete model folder (what `save_pretrained` writes, or "
                    "`hf download REPO --local-dir DIR`)",
                )
            ]
        return _pipeline_class(model, Path(name), f"{model.field} folder {name}")
    if model.kind == "file" and Path(name).is_file():
        return []
    return hub.check(model)


def _pipeline_class(model: Model, folder: Path, what: str) -> list[Problem]:
    """A pipeline folder whose `model_index.json` names a class the component does not run."""
    if model.kind != "pipeline" or not model.pipelines:
        return []
    found = json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
    if found in model.pipelines:
        return []
    fix = "choose a preset of its family, or a model of the preset's family"
    return [
        Problem(f"{what} holds a {found}, not a pipeline of its preset's ({', '.join(model.pipelines)})", fix)
    ]


def _missing_files(folder: Path, model: Model) -> list[str]:
    """What the model's loader needs and `folder` lacks: its config file and weights (per component for a
    diffusers pipeline; diffusers loads safetensors only, as the engine asks)."""
    kind = model.kind
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
    if kind == "file":
        assert model.in_folder is not None, f"{model.field}: a file need names its file in a folder"
        return [] if (folder / model.in_folder).is_file() else [model.in_folder]
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

    def check(self, model: Model) -> list[Problem]:
        from huggingface_hub import constants, is_offline_mode, try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        name, field = model.name, model.field
        repo, local = name, "folder"
        probe = {"pipeline": "model_index.json", "processor": "preprocessor_config.json"}.get(
            model.kind, "config.json"
        )
        if model.kind == "file":
            try:
                repo, probe = registry.hub_file(name)
            except ValueError:
                fix = "fix the path, or name a hub file as REPO_ID/FILENAME"
                return [Problem(f"{field} {name}: no such file", fix)]
            local = "file"
        try:
            validate_repo_id(repo)
        except HFValidationError:
            return [
                Problem(f"{field} {name!r} is neither a folder nor a hub id", "fix the folder path or hub id")
            ]
        files = f" {probe}" if model.kind == "file" else ""
        download = f"`hf download {repo}{files}{f' --revision {model.revision}' if model.revision else ''}`"
        offline = f"`{field}: {registry.BUILTIN}{model.alternative}` for an offline try"
        fix = f"{download}, or {offline}" if model.alternative else download
        cached = try_to_load_from_cache(repo, probe, revision=model.revision)
        if isinstance(cached, str):
            missing = [] if model.kind == "file" else _missing_files(Path(cached).parent, model)
            if not missing:
                return _pipeline_class(model, Path(cached).parent, f"{field} {name!r}")
            what = f"{field} {name!r} is in the Hugging Face cache without {', '.join(missing)}"
            return [Problem(what, f"{download} completes it")]
        what = (
            f"{field} {name!r} is not a local {local} nor in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE})"
        )
        if is_offline_mode():
            return [Problem(f"{what}, and offline mode is on", fix)]
        if self.silent is None:
            answered, reason = _ask_hub(repo, probe, model.revision)
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
