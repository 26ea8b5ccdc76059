"""What a stage, curate step, generator family, scorer or executor will need before it runs, as data.

Each of them declares its needs (`Stage.needs`, `CurateStep.needs`, `Family.needs`, `PairScorer.needs`,
an executor's `needs`); `synthvlm.preflight` checks every declaration before any work, and holds no
knowledge of which component needs what. A declaration reads only the config: nothing here loads,
downloads or imports a model library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["pipeline", "diffusers", "processor", "transformers", "file"]
"""What a model string must name: a diffusers pipeline, one diffusers model, a tokenizer and image
processor only, a transformers model, or one weights file (a path, a folder or builtin holding it, or a
hub file `REPO_ID/FILENAME`)."""


@dataclass(frozen=True)
class Model:
    """A model the component will load."""

    field: str
    """The config key that names it (`generate.model`, `score.scorers.nsfw.model`)."""
    name: str
    """The model string: `builtin:NAME`, a folder, a hub id (or a file, for kind `file`)."""
    kind: ModelKind
    revision: str | None = None
    alternative: str | None = None
    """The `builtin:` name that stands in for it offline (suggested in the fix)."""
    in_folder: str | None = None
    """Kind `file`: the file's name inside a folder or a builtin model."""
    pipelines: tuple[str, ...] = ()
    """Kind `pipeline`: the pipeline classes it must be (its family's); empty: any."""


@dataclass(frozen=True)
class Extra:
    """Python modules the component imports, and the install command that brings them."""

    feature: str
    modules: tuple[str, ...]
    install: str


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint the component will call."""

    field: str
    """The config section that names it (`curate.judge`, `score.scorers.vqascore`)."""
    base_url: str | None
    api_key_env: str
    model: str


@dataclass(frozen=True)
class Inputs:
    """Files or globs the component reads with ingest's rule (each must match a readable file)."""

    field: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class Exists:
    """One path that must exist as a file or a folder."""

    label: str
    """How the problem names it: the config key and the path as written (`curate.perplexity.model X`)."""
    path: str
    kind: Literal["file", "folder", "any"]
    fix: str


@dataclass(frozen=True)
class Destination:
    """A folder (or URL) the component will write to."""

    where: str
    target: str
    fix: str


@dataclass(frozen=True)
class Refusal:
    """A problem the declaration already sees in the config itself (what is wrong, what to do)."""

    what: str
    fix: str


@dataclass(frozen=True)
class Note:
    """Information for the user, not a problem."""

    text: str


Need = Model | Extra | Endpoint | Inputs | Exists | Destination | Refusal | Note
"""One declared need."""

RECIPE_FIX = "fix the path or glob (relative paths in a recipe are relative to the recipe file)"
"""The fix for an input path of a recipe that does not exist."""
