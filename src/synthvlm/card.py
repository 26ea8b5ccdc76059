"""The dataset card every export folder gets: README.md in the Hugging Face dataset-card format.

The YAML header is what the hub and `datasets.load_dataset(folder)` read (`configs` names the format's data
files); the body says how the data was made: recipe, models, funnel, scores, how to load it. The text is a
function of the run's records only (no dates, no absolute paths), so a rerun writes the same bytes and a
recipe rerun elsewhere writes the same card.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from synthvlm.config import map_paths
from synthvlm.core import fsio, layout, schema
from synthvlm.core.driver import run_status
from synthvlm.core.layout import ExportDir
from synthvlm.generate.presets import PRESETS

if TYPE_CHECKING:
    from synthvlm.config import RunConfig, ScoreConfig

SIZE_CATEGORIES = (
    "n<1K",
    "1K<n<10K",
    "10K<n<100K",
    "100K<n<1M",
    "1M<n<10M",
    "10M<n<100M",
    "100M<n<1B",
    "1B<n<10B",
    "10B<n<100B",
    "100B<n<1T",
)
"""The hub's `size_categories` buckets below a trillion records (above: n>1T)."""

_LICENSE_NOTE = (
    "# license: replace `other` with the license you publish this dataset under; it must respect the\n"
    "# licenses of the generator model and of the caption source (for a custom one add license_name and\n"
    "# license_link).\n"
)


def size_category(records: int) -> str:
    """The hub's size bucket of a record count (`24` -> `n<1K`, `1000` -> `1K<n<10K`)."""
    for i, label in enumerate(SIZE_CATEGORIES):
        if records < 1000 * 10**i:
            return label
    return "n>1T"


@dataclass(frozen=True)
class RunFacts:
    """What a card says about a run, read once for every format's card."""

    records: int
    recipe: dict[str, Any]
    funnel: dict[str, dict[str, Any]]
    scores: dict[str, tuple[float, float, float]]
    generators: list[dict[str, Any]]
    score: ScoreConfig


def run_facts(run_dir: fsio.RunPath, config: RunConfig, *, records: int) -> RunFacts:
    """Read the card's facts from the run: funnel from the completion records, scores from the selection,
    generator provenance from the candidate rows of the selected images."""
    stages = {name: f for name, f in run_status(run_dir)["stages"].items() if name != "export"}
    funnel = {name: {k: f[k] for k in ("in", "kept", "dropped")} for name, f in stages.items()}
    funnel["export"] = {"in": records, "kept": records, "dropped": {}}
    columns = schema.score_columns(config.score.scorers.enabled())
    selection = pa.concat_tables(
        [fsio.read_table(p, columns=["key", *columns]) for p in layout.StageDir(run_dir, "select").shards()]
    )
    scores = {}
    if selection.num_rows:
        for name in columns:
            values = selection.column(name).to_pylist()
            scores[name] = (math.fsum(values) / len(values), min(values), max(values))
    generators = _generators(run_dir, config, selection.column("key").combine_chunks())
    return RunFacts(
        records=records,
        recipe=_recipe(config, [*stages, "export"]),
        funnel=funnel,
        scores=scores,
        generators=generators,
        score=config.score,
    )


def _generators(run_dir: fsio.RunPath, config: RunConfig, selected: pa.Array) -> list[dict[str, Any]]:
    """How the selected images were made: one entry per generator and distinct provenance, with the
    generator's preset, licence and number of selected images (one generate shard in memory at a time)."""
    counts: dict[tuple[Any, ...], int] = {}
    columns = ["key", *schema.PROVENANCE, *(["generator"] if config.generate.mixed else [])]
    for path in layout.StageDir(run_dir, "generate").shards():
        shard = fsio.read_table(path, columns=columns)
        chosen = shard.filter(pc.is_in(shard.column("key"), value_set=selected))
        names = schema.generator_column(chosen, config.generate.pool()[0].label).to_pylist()
        for name, row in zip(names, chosen.select(list(schema.PROVENANCE)).to_pylist(), strict=True):
            group = (name, *row.values())
            counts[group] = counts.get(group, 0) + 1
    out = []
    for name, *values in sorted(counts, key=repr):
        generator = config.generate.generator(name)
        preset = PRESETS[generator.preset]
        out.append(
            {
                "generator": name,
                "preset": generator.preset,
                "licence": preset.licence,
                "commercial": preset.commercial,
                "images": counts[(name, *values)],
                **dict(zip(schema.PROVENANCE, values, strict=True)),
            }
        )
    return out


def licence_warnings(facts: RunFacts) -> list[str]:
    """One sentence per generator of the selection whose licence forbids or limits commercial use."""
    out = []
    for name in dict.fromkeys(g["generator"] for g in facts.generators):
        gen = next(g for g in facts.generators if g["generator"] == name)
        images = sum(g["images"] for g in facts.generators if g["generator"] == name)
        if gen["commercial"] == "yes":
            continue
        terms = "non-commercial use only" if gen["commercial"] == "no" else "commercial use only on its terms"
        notes = " ".join(PRESETS[gen["preset"]].notes)
        out.append(
            f"{images} of the {facts.records} images come from {name} ({gen['model_id']}), licence "
            f"{gen['licence']}: {terms}" + (f" ({notes})" if notes else "")
        )
    return out


def _recipe(config: RunConfig, sections: list[str]) -> dict[str, Any]:
    """The run's config, the sections of the stages that ran, with file paths cut to their names: the card
    says what was done, not where on one machine (and stays the same wherever the recipe reruns)."""
    data = config.model_dump(mode="json")
    map_paths(data, _name)
    data["export"].pop("out")  # the card lives in it
    return {"seed": data["seed"], **{name: data[name] for name in sections}}


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def features_yaml(scorers: list[str]) -> list[dict[str, str]]:
    """The Parquet export's features (`schema.export_parquet_features`) as the card's
    `dataset_info.features` list (what `datasets` writes)."""
    return [
        {"name": name, "dtype": f.get("dtype", f["_type"].lower())}
        for name, f in schema.export_parquet_features(scorers).items()
    ]


def card_header(facts: RunFacts, fmt: str) -> dict[str, Any]:
    """The card's YAML metadata for one format's folder, without the license line (which carries a note)."""
    header: dict[str, Any] = {
        "task_categories": ["image-to-text", "text-to-image"],
        "size_categories": [size_category(facts.records)],
        "tags": ["synthetic", "synthvlm"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": ExportDir.DATA_FILES[fmt]}],
            }
        ],
    }
    if fmt in ("parquet", "hf"):
        header["dataset_info"] = {"features": features_yaml(facts.score.scorers.enabled())}
    return header


def render_card(facts: RunFacts, fmt: str) -> str:
    """The README.md of one format's folder."""
    header = yaml.safe_dump(card_header(facts, fmt), sort_keys=False, allow_unicode=False)
    lines = ["---", _LICENSE_NOTE + "license: other", header.rstrip("\n"), "---", ""]
    lines += [
        "# Synthetic image-caption pairs",
        "",
        f"{facts.records} image-caption pairs made with synthvlm, the SynthVLM recipe: "
        "captions were filtered and deduplicated, images generated for them by a text-to-image model, each "
        "image scored by CLIPScore + lambda * SSIM against its caption, and the best kept.",
        "",
        "## Models",
        "",
    ]
    for gen in facts.generators:
        lines.append(
            f"- Generator `{gen['generator']}` (preset {gen['preset']}, licence {gen['licence']}, "
            f"{gen['images']} of the images): `{gen['model_id']}` at revision `{gen['model_revision']}` "
            f"({gen['scheduler']}, {gen['steps']} steps, guidance {gen['guidance']}, "
            f"{gen['width']}x{gen['height']}, {gen['dtype']})"
        )
        if gen["refiner_id"] is not None:
            lines.append(f"- Refiner: `{gen['refiner_id']}` at revision `{gen['refiner_revision']}`")
    score = facts.score
    revision = f"revision `{score.clip_revision}`" if score.clip_revision else "revision not pinned"
    lines += [
        f"- Scorer: CLIP `{score.clip_model}`, {revision}: clip = max(cosine, 0) of the image and "
        f'"{score.prefix}" + caption',
        f"- SSIM (no model): the grayscale image at {score.ssim_size}x{score.ssim_size} against a copy "
        f"resized down to {score.ssim_low}x{score.ssim_low} and back up, data range {score.ssim_data_range}",
        f"- weighted = clip + {score.ssim_weight} * ssim; the selection is ranked by "
        f"{facts.recipe['select']['key']}",
        "",
        "## Funnel",
        "",
        "Records in, kept and dropped (by reason) at each stage:",
        "",
        "| stage | in | kept | dropped |",
        "|---|---:|---:|---|",
    ]
    for name, f in facts.funnel.items():
        dropped = ", ".join(f"{reason} {n}" for reason, n in f["dropped"].items())
        lines.append(f"| {name} | {f['in']} | {f['kept']} | {dropped} |")
    warnings = licence_warnings(facts)
    if warnings:
        lines += ["", "## Licence of the generators", ""]
        lines += [f"- {w}" for w in warnings]
        lines.append("")
        lines.append("The dataset's own licence (the header's `license`) must respect these.")
    lines += ["", "## Scores of the selection", ""]
    if facts.scores:
        lines += ["| score | mean | min | max |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {m:.4f} | {lo:.4f} | {hi:.4f} |" for k, (m, lo, hi) in facts.scores.items()]
    else:
        lines.append("No record was selected.")
    recipe = yaml.safe_dump(facts.recipe, sort_keys=False, allow_unicode=False).rstrip("\n")
    lines += [
        "",
        "## Recipe",
        "",
        "The run's resolved synthvlm config (file paths cut to their names); rerun it with `synthvlm run`:",
        "",
        "```yaml",
        recipe,
        "```",
        "",
        "## Load it",
        "",
        *_how_to_load(fmt),
    ]
    return "\n".join(lines) + "\n"


def _how_to_load(fmt: str) -> list[str]:
    py = ["```python", "import datasets", ""]
    if fmt == "hf":
        return [
            "This folder is a Hugging Face dataset repository as it is: publish it with",
            "",
            "```bash",
            "hf upload USER/NAME . --repo-type dataset  # or: huggingface-cli upload ...",
            "```",
            "",
            *py,
            'ds = datasets.load_dataset("USER/NAME", split="train")  # or the path of this folder',
            'ds[0]["image"]  # a PIL image',
            "```",
        ]
    if fmt == "parquet":
        return [
            *py,
            'ds = datasets.load_dataset("PATH/OF/THIS/FOLDER", split="train")',
            'ds[0]["image"]  # a PIL image',
            "```",
        ]
    if fmt == "webdataset":
        return [
            "Shards `shard-NNNNN.tar` with `jpg`, `txt` and `json` per sample (`sizes.json`: samples per "
            "shard, for open_clip). With `datasets`:",
            "",
            *py,
            'ds = datasets.load_dataset("PATH/OF/THIS/FOLDER", split="train")',
            'ds[0]["jpg"], ds[0]["txt"], ds[0]["json"]  # PIL image, caption, scores',
            "```",
        ]
    return [
        f"LLaVA's training script: `--data_path {ExportDir.LLAVA_JSON} --image_folder images`. With "
        "`datasets` the records load with `image` as a path inside `images/` (LLaVA's layout; not decoded):",
        "",
        *py,
        'ds = datasets.load_dataset("PATH/OF/THIS/FOLDER", split="train")',
        "```",
    ]
