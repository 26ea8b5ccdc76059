"""The HTML quality report of a run: funnel, score distributions, image grids, provenance, cost, Table 4.

The report is one HTML file plus an assets folder beside it (PNG plots, JPEG thumbnails); it references
nothing outside that folder, so it opens offline and can be copied as a unit. The page comes from a
Jinja2 template with autoescaping always on: every caption, id and path from data is shown as text.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from synthvlm.core import fsio, layout, schema
from synthvlm.core.errors import UserError
from synthvlm.report.caption_stats import SAMPLE, caption_statistics
from synthvlm.report.reference import SIDES
from synthvlm.score.ssim import DEFINITIONS

GRIDS = (
    ("top", "Top of the ranking"),
    ("above", "Just above the cut-off (last selected)"),
    ("below", "Just below the cut-off (first not selected)"),
    ("bottom", "Bottom of the ranking"),
)
"""Image grids in page order: id and heading. All are taken from the ranking `select` cuts."""


def default_out(run: str | Path) -> Path:
    """Where `synthvlm report RUN` writes when no --out is given."""
    return Path(run) / "report.html"


def assets_dir(out: Path) -> Path:
    """The assets folder of a report file: `NAME_assets/` beside `NAME.html`."""
    return out.with_name(f"{out.stem}_assets")


def gap_json(out: Path) -> Path:
    """The machine-readable gap to a reference set (`--reference`): `gap.json` beside the report file."""
    return out.with_name("gap.json")


# ------------------------------------------------------------------------------------------- data


def _read(run: Path, stage: str, folder: str = "data", columns: list[str] | None = None) -> Any:
    files = layout.StageDir(run, stage).shards(folder)
    return pa.concat_tables([fsio.read_table(f, columns=columns) for f in files]) if files else None


def _means(table: Any, columns: Sequence[str]) -> dict[str, float | None]:
    return {
        m: (float(np.mean(table.column(m).to_numpy())) if table is not None and table.num_rows else None)
        for m in columns
    }


def _vendi(keys: Sequence[str], image_emb: dict[str, np.ndarray]) -> float | None:
    """The Vendi score of the images of `keys` (None when the run kept no embeddings, or there are none)."""
    from synthvlm.report.diversity import vendi_score

    if not image_emb or not keys:
        return None
    return vendi_score(np.stack([image_emb[k] for k in keys]))


def stored_image_embeddings(run: Path) -> dict[str, np.ndarray]:
    """Each scored candidate's stored CLIP image embedding by key (empty when the run kept none)."""
    out: dict[str, np.ndarray] = {}
    for path in layout.StageDir(run, "score").embedding_shards():
        table = fsio.read_table(path, columns=["key", "image_emb"])
        vectors = schema.embedding_matrix(table.column("image_emb"))
        out.update(zip(table.column("key").to_pylist(), vectors, strict=True))
    return out


def generators(
    run: Path,
    config: Any,
    accounting: dict[str, dict[str, Any]],
    *,
    scores: Any,
    selection: Any,
    columns: Sequence[str],
    image_emb: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    """Per generator of the pool: `synthvlm status`'s accounting, its preset and licence, the mean of every
    score column over its scored candidates and over its selected images, and the Vendi score of both."""
    from synthvlm.generate.presets import PRESETS

    made: dict[str, str] = {}
    single = config.generate.pool()[0].label
    for path in layout.StageDir(run, "generate").shards():
        table = fsio.read_table(path, columns=["key", *(["generator"] if config.generate.mixed else [])])
        names = schema.generator_column(table, single).to_pylist()
        made.update(zip(table.column("key").to_pylist(), names, strict=True))
    out = []
    for gen in config.generate.pool():
        preset = PRESETS[gen.preset]
        row: dict[str, Any] = {
            "name": gen.label,
            "preset": gen.preset,
            "licence": preset.licence,
            "commercial": preset.commercial,
            **accounting.get(gen.label, {}),
        }
        for side, table in (("all", scores), ("selected", selection)):
            if table is None:
                row[f"means_{side}"] = dict.fromkeys(columns)
                row[f"vendi_{side}"] = None
                continue
            mine = [made.get(k) == gen.label for k in table.column("key").to_pylist()]
            part = table.filter(pa.array(mine, pa.bool_()))
            row[f"means_{side}"] = _means(part, columns)
            row[f"vendi_{side}"] = _vendi(part.column("key").to_pylist(), image_emb)
        out.append(row)
    return out


def provenance(run: Path) -> dict[str, Any]:
    """Generation settings as recorded per image: each distinct setting with its count, and the seed range."""
    table = _read(run, "generate")
    if table is None or table.num_rows == 0:
        return {"settings": [], "seed_min": None, "seed_max": None, "candidates": 0, "attempts": 0}
    cols = list(schema.PROVENANCE)
    groups = table.group_by(cols).aggregate([("key", "count")]).sort_by([(c, "ascending") for c in cols[:2]])
    settings = [{**{c: row[c] for c in cols}, "images": row["key_count"]} for row in groups.to_pylist()]
    seeds = table.column("seed").to_numpy()
    return {
        "settings": settings,
        "seed_min": int(seeds.min()),
        "seed_max": int(seeds.max()),
        "candidates": table.num_rows,
        "attempts": int(table.column("attempts").to_numpy().sum()),
    }


def timing_caveat(model_ids: Sequence[str], device: str) -> str | None:
    """Why this run's timings say nothing about GPU cost, or None when they do.

    A `builtin:` model is a tiny random-weight test model, and `generate.device: cpu` ran on the CPU:
    neither measures what the recipe's real model costs on a GPU.
    """
    tiny = sorted({m for m in model_ids if m.startswith("builtin:")})
    where = " on CPU" if device == "cpu" else ""
    if tiny:
        what = f"{', '.join(tiny)}, a tiny built-in test model{where}"
    elif device == "cpu":
        what = "the CPU (generate.device: cpu)"
    else:
        return None
    return (
        f"These timings come from {what}: they are not GPU costs, so no GPU-hours are projected from them. "
        "For a GPU estimate, run `synthvlm plan RECIPE --gpus N` on the recipe with the real model."
    )


def cost(
    run: Path, *, selected: int, target: int, model_ids: Sequence[str], device: str
) -> dict[str, Any] | None:
    """Model time per image from `generate/timing`, and GPU-hours to reach `target` selected images.

    hours = target / rate * seconds_per_image / 3600 with rate = selected / candidates: the selection rate
    observed in this run, and seconds per candidate image (retries of invalid images included). No hours
    when `timing_caveat` says the timings are not GPU costs.
    """
    timing = _read(run, "generate", "timing")
    if timing is None or timing.num_rows == 0:
        return None
    seconds = float(np.sum(timing.column("seconds").to_numpy()))
    candidates = timing.num_rows
    rate = selected / candidates
    per_image = seconds / candidates
    caveat = timing_caveat(model_ids, device)
    return {
        "model_seconds": seconds,
        "candidates": candidates,
        "seconds_per_image": per_image,
        "images_per_second": candidates / seconds if seconds > 0 else None,
        "selected": selected,
        "selection_rate": rate,
        "target": target,
        "gpu_hours": target / rate * per_image / 3600 if rate > 0 and caveat is None else None,
        "caveat": caveat,
    }


SECTION_NEEDS = {
    "captions": "ingest",
    "table4": "select",
    "distributions": "select",
    "grids": "select",
    "provenance": "generate",
    "generators": "generate",
    "cost": "generate",
}
"""The last stage each report section reads: the section says so while it, or a stage before it, is
unfinished."""


def pending(run: str | Path, stages: Sequence[str], funnel: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Why each unfinished stage of `stages` (the run's own, in order) is unfinished, and what to run: the
    command the pipeline's needs-first error names (`synthvlm.core.driver.needs_first`)."""
    found = {}
    for name in stages:
        state = funnel.get(name)
        if state is not None and state["complete"]:
            continue
        command = f"run `synthvlm {name} --run {run}`"
        if state is None or state["tasks_done"] == 0:
            found[name] = f"{name} has not run: {command}"
        else:
            found[name] = (
                f"{name} has not finished ({state['tasks_done']}/{state['tasks_total']} shards): "
                f"{command} to resume"
            )
    return found


def waiting(stages: Sequence[str], unfinished: dict[str, str]) -> dict[str, str | None]:
    """Per report section, the first unfinished stage up to the one it reads (`SECTION_NEEDS`), or None."""
    result: dict[str, str | None] = {}
    for section, needed in SECTION_NEEDS.items():
        chain = stages[: stages.index(needed) + 1] if needed in stages else [needed]
        result[section] = next((unfinished[name] for name in chain if name in unfinished), None)
    return result


def keep_rate_curve(values: np.ndarray, *, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of `values` at or above each threshold: what `select --threshold t` would keep of the pool."""
    if len(values) == 0:
        return np.zeros(0), np.zeros(0)
    thresholds = np.linspace(values.min(), values.max(), points)
    ordered = np.sort(values)
    kept = len(ordered) - np.searchsorted(ordered, thresholds, side="left")
    return thresholds, kept / len(values)


def grid_indices(n_ranked: int, n_selected: int, *, size: int) -> dict[str, list[int]]:
    """Positions in the ranking for each grid: top, just above and just below the cut-off, bottom."""
    return {
        "top": list(range(min(size, n_ranked))),
        "above": list(range(max(0, n_selected - size), n_selected)),
        "below": list(range(n_selected, min(n_ranked, n_selected + size))),
        "bottom": list(range(max(0, n_ranked - size), n_ranked)),
    }


def dataset_rows(datasets: Sequence[str | Path], score_settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Table-4 rows from `score-dataset` outputs, flagged where their metric settings differ from the run."""
    rows = []
    for item in datasets:
        path = Path(item)
        path = path / "summary.json" if path.is_dir() else path
        if not path.is_file():
            raise UserError(
                f"{item}: not a score-dataset output (no summary.json); run `synthvlm score-dataset` first"
            )
        summary = fsio.read_json(path)
        # A summary written before ssim_data_range existed was scored with its default, 255.
        settings = {"ssim_data_range": 255, **summary["score"]}
        differs = sorted(k for k, v in settings.items() if score_settings.get(k) != v)
        definition = DEFINITIONS[settings["ssim_data_range"]]
        rows.append({**summary, "score": settings, "ssim_definition": definition, "differs": differs})
    return rows


def reference_gap(
    run: Path,
    *,
    score: Any,
    waiting_note: str | None,
    reference: str | Path | None,
    reference_format: str = "auto",
    reference_images: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The gap section: the selected set's CMMD and PRDC to a reference, or the sentence saying why not.

    `waiting` is the note of the first unfinished stage up to select; `note` the sentence for a run that
    kept no embeddings or a report without a reference; `result` the numbers that go to gap.json; `_map`
    the points of the 2-D maps. Asking for a reference the run cannot be compared with is a UserError.
    """
    from synthvlm.report.reference import embed_reference, gap_metrics, no_embeddings_note, run_embeddings
    from synthvlm.report.score_dataset import with_counter
    from synthvlm.score.clip import scorer_for

    where = run.resolve()
    section: dict[str, Any] = {"note": None, "waiting": waiting_note, "result": None, "_map": None}
    if waiting_note is not None:
        if reference is not None:
            raise UserError(f"--reference needs the run's selection: {waiting_note}")
        return section
    sets = run_embeddings(run)
    if sets is None:
        section["note"] = no_embeddings_note(where, kept=score.embeddings)
        if reference is not None:
            raise UserError(section["note"])
        return section
    if reference is None:
        section["note"] = (
            f"No reference set: `synthvlm report {where} --reference DATASET` measures the gap between the "
            "selected set and a real dataset (docs/report.md)."
        )
        return section
    selected, rest = sets
    scorer = scorer_for(score, models_dir=layout.models_dir(run))
    described, real = with_counter(
        "reference",
        progress,
        lambda step: embed_reference(
            reference, fmt=reference_format, images=reference_images, scorer=scorer, on_rows=step
        ),
    )
    section["result"] = {
        "run": str(where),
        "reference": described,
        "score": score.model_dump(mode="json", exclude={"device", "batch_size"}),
        "not_selected": {"images": len(rest.image), "captions": len(rest.text)},
        **gap_metrics(real, selected, name="selected"),
    }
    section["_map"] = {
        side: (getattr(real, side), getattr(selected, side), getattr(rest, side)) for side in SIDES
    }
    return section


# ------------------------------------------------------------------------------------------- plots


def _figure(width: float = 5.0, height: float = 3.2) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Any, path: Path) -> None:
    # No metadata: the same data gives the same PNG bytes.
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})


def plot_histogram(
    path: Path, *, metric: str, all_values: np.ndarray, selected: np.ndarray, cutoff: float | None
) -> None:
    """All candidates and the selected set on shared bins; the cut-off drawn on the ranking key."""
    fig = _figure()
    ax = fig.add_subplot()
    values = all_values if len(all_values) else np.zeros(1)
    bins = np.histogram_bin_edges(values, bins=30)
    ax.hist(all_values, bins=bins, color="#9aa5b1", label=f"all candidates ({len(all_values)})")
    ax.hist(selected, bins=bins, color="#2b6cb0", alpha=0.85, label=f"selected ({len(selected)})")
    if cutoff is not None:
        ax.axvline(cutoff, color="#c53030", linestyle="--", linewidth=1.5, label=f"cut-off {cutoff:.4f}")
    ax.set_xlabel(metric)
    ax.set_ylabel("images")
    ax.locator_params(axis="x", nbins=5)
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_keep_rate(path: Path, *, values: np.ndarray, key: str, cutoff: float | None, selected: int) -> None:
    """Keep-rate of the best-of-N pool versus a threshold on the ranking key, the run's cut-off marked."""
    fig = _figure()
    ax = fig.add_subplot()
    thresholds, rate = keep_rate_curve(values)
    ax.plot(thresholds, rate, color="#2b6cb0")
    if cutoff is not None and len(values):
        ax.axvline(cutoff, color="#c53030", linestyle="--", linewidth=1.5)
        ax.plot(
            [cutoff],
            [selected / len(values)],
            "o",
            color="#c53030",
            label=f"this run: {selected} of {len(values)} at {cutoff:.4f}",
        )
        ax.legend(fontsize=8)
    ax.set_xlabel(f"threshold on {key}")
    ax.set_ylabel("fraction of best-of-N pool kept")
    ax.set_ylim(0, 1.02)
    _save(fig, path)


def plot_embedding_map(
    path: Path, *, side: str, reference: np.ndarray, selected: np.ndarray, rest: np.ndarray
) -> None:
    """Reference, selected and not-selected embeddings of one side on one PCA plane (`gap.embedding_map`)."""
    from synthvlm.report.gap import embedding_map

    ref_xy, sel_xy, rest_xy = embedding_map(reference, selected, rest if len(rest) else None)
    fig = _figure()
    ax = fig.add_subplot()
    if rest_xy is not None:
        ax.scatter(*rest_xy.T, s=9, color="#9aa5b1", alpha=0.6, label=f"not selected ({len(rest_xy)})")
    ax.scatter(*ref_xy.T, s=11, color="#dd6b20", marker="^", alpha=0.8, label=f"reference ({len(ref_xy)})")
    ax.scatter(*sel_xy.T, s=11, color="#2b6cb0", alpha=0.8, label=f"selected ({len(sel_xy)})")
    ax.set_xlabel(f"{side} embeddings: principal component 1")
    ax.set_ylabel("principal component 2")
    ax.legend(fontsize=8)
    _save(fig, path)


def threshold_axis(values: np.ndarray, bounds: Sequence[float]) -> tuple[float, float, list[float]]:
    """The x-range of a statistic's histogram and the thresholds drawn on it: the range covers the values
    and every threshold but sys.maxsize, the filters' "no limit" (which the table shows as such)."""
    drawn = sorted({float(b) for b in bounds if abs(b) < sys.maxsize})
    points = [*values.tolist(), *drawn] or [0.0]
    x_lo, x_hi = min(points), max(points)
    if x_lo == x_hi:  # one value: a unit-wide axis around it, as numpy's histogram does
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    return x_lo, x_hi, drawn


def plot_caption_statistic(path: Path, *, stat: dict[str, Any], values: np.ndarray) -> None:
    """One filter's statistic over the sampled captions, its min and max thresholds drawn as lines."""
    fig = _figure()
    ax = fig.add_subplot()
    x_lo, x_hi, drawn = threshold_axis(values, [stat["low"], stat["high"]])
    ax.hist(values, bins=np.linspace(x_lo, x_hi, 31), color="#9aa5b1", label=f"captions ({len(values)})")
    for side, name, dropped, style in (
        ("low", "low_name", "below", "--"),
        ("high", "high_name", "above", ":"),
    ):
        if stat[side] in drawn:
            label = f"{stat[name]} {stat[side]:g}: drops {stat[dropped]}"
            ax.axvline(stat[side], color="#c53030", linestyle=style, linewidth=1.5, label=label)
    ax.set_xlim(x_lo, x_hi)
    ax.set_xlabel(stat["name"])
    ax.set_ylabel("captions")
    ax.locator_params(axis="x", nbins=5)
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.legend(fontsize=8)
    _save(fig, path)


# ------------------------------------------------------------------------------------------- thumbnails


def make_thumbnails(
    run: Path,
    rows: list[dict[str, Any]],
    folder: Path,
    *,
    size: int,
    on_done: Callable[[int], None] = lambda n: None,
) -> dict[str, str]:
    """JPEG thumbnails (longest side `size`) of the rows' images: key -> file name (unreadable: none)."""
    import io

    from PIL import Image

    from synthvlm.core.webdataset import iter_tar

    wanted: dict[str, dict[str, str]] = {}
    for row in rows:
        wanted.setdefault(row["image_shard"], {})[row["image_name"]] = row["key"]
    made: dict[str, str] = {}
    folder.mkdir(parents=True, exist_ok=True)
    for shard in sorted(wanted):
        names = wanted[shard]
        for name, data in iter_tar(run / shard, set(names)):
            key = names[name]
            try:
                image = Image.open(io.BytesIO(data)).convert("RGB")
            except (ValueError, OSError):
                on_done(1)
                continue
            image.thumbnail((size, size), Image.Resampling.BICUBIC)
            file = f"{key}.jpg"
            image.save(folder / file, format="JPEG", quality=85)
            made[key] = file
            on_done(1)
    return made


def _with_progress(total: int, enabled: bool, work: Callable[[Callable[[int], None]], Any]) -> Any:
    if not enabled:
        return work(lambda n: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("[bold]thumbnails"), BarColumn(), MofNCompleteColumn()) as bar:
        task = bar.add_task("thumbnails", total=total)
        return work(lambda n: bar.advance(task, n))


# ------------------------------------------------------------------------------------------- report


def collect(
    run: str | Path,
    *,
    grid: int = 8,
    target: int = 100_000,
    datasets: Sequence[str | Path] = (),
    caption_sample: int = SAMPLE,
    reference: str | Path | None = None,
    reference_format: str = "auto",
    reference_images: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Everything the report shows, as data; `_`-prefixed keys hold the arrays the plots are drawn from.

    With `reference` (any source `score-dataset` reads), `gap` holds the selected set's distance to it."""
    from synthvlm import pipeline
    from synthvlm.stages.select import key_label, key_values, rank_candidates

    run = Path(run)
    status = pipeline.status(run)
    config = pipeline.load_run_config(run)
    assert config is not None  # status() checked the run directory
    stages = pipeline.default_stages(config)
    unfinished = pending(run.resolve(), stages, status["stages"])
    sections = waiting(stages, unfinished)
    key = key_label(config.select.key)
    columns = schema.score_columns(config.score.scorers.enabled())
    metrics = [*columns, *([key] if key not in columns else [])]  # a weighted-sum key: its own histogram
    scores = _read(run, "score")
    selection = _read(
        run, "select", columns=["key", "caption_id", "candidate_index", *columns, "rank", "cutoff"]
    )
    if isinstance(config.select.key, dict):  # a weighted sum, as select computes it

        def keyed(table: Any) -> Any:
            if table is None:
                return None
            return table.append_column(key, pa.array(key_values(table, config.select.key), pa.float64()))

        scores, selection = keyed(scores), keyed(selection)
    n_selected = selection.num_rows if selection is not None else 0
    cutoff = float(selection.column("cutoff")[0].as_py()) if n_selected else None

    ranked_rows: list[dict[str, Any]] = []
    if scores is not None and scores.num_rows:
        order = rank_candidates(
            scores.select(["caption_id", "candidate_index", key]), key=key, best_of_n=config.select.best_of_n
        )
        ranked_rows = scores.take(order).to_pylist()
    selected_keys = set(selection.column("key").to_pylist()) if selection is not None else set()
    grids = {}
    for name, positions in grid_indices(len(ranked_rows), n_selected, size=grid).items():
        grids[name] = [
            {**ranked_rows[i], "rank": i + 1, "selected": ranked_rows[i]["key"] in selected_keys}
            for i in positions
        ]
    score_settings = config.score.model_dump(mode="json", exclude={"device", "batch_size"})
    image_emb = stored_image_embeddings(run) if sections["table4"] is None else {}
    all_keys = scores.column("key").to_pylist() if scores is not None else []
    chosen_keys = selection.column("key").to_pylist() if selection is not None else []
    prov = provenance(run)
    model_ids = [m for s in prov["settings"] for m in (s["model_id"], s["refiner_id"]) if m]
    captions = None
    if sections["captions"] is None:
        captions = caption_statistics(run, config.curate, size=caption_sample)
    gap = reference_gap(
        run,
        score=config.score,
        waiting_note=sections["table4"],  # the gap reads the selection, as Table 4 does
        reference=reference,
        reference_format=reference_format,
        reference_images=reference_images,
        progress=progress,
    )
    return {
        "run": str(run.resolve()),
        "funnel": status["stages"],
        "stages": stages,
        "pending": unfinished,
        "waiting": sections,
        "key": key,
        "select": config.select.resolved().model_dump(mode="json"),
        "score": score_settings,
        "ssim_definition": DEFINITIONS[config.score.ssim_data_range],
        "seed": config.seed,
        "device": config.generate.device,
        "cutoff": cutoff,
        "selected": n_selected,
        "pool": len(ranked_rows),
        "columns": columns,
        "metrics": metrics,
        "table4": [
            {
                "name": "this run: all candidates",
                "scored": scores.num_rows if scores is not None else 0,
                "means": _means(scores, columns),
                "vendi": _vendi(all_keys, image_emb),
            },
            {
                "name": "this run: selected",
                "scored": n_selected,
                "means": _means(selection, columns),
                "vendi": _vendi(chosen_keys, image_emb),
            },
        ],
        "generators": (
            generators(
                run,
                config,
                status.get("generators", {}),
                scores=scores if sections["table4"] is None else None,
                selection=selection if sections["table4"] is None else None,
                columns=metrics,
                image_emb=image_emb,
            )
            if sections["generators"] is None
            else []
        ),
        "datasets": dataset_rows(datasets, score_settings),
        "provenance": prov,
        "cost": cost(
            run, selected=n_selected, target=target, model_ids=model_ids, device=config.generate.device
        ),
        "captions": captions,
        "grids": grids,
        "gap": gap,
        "_scores": scores,
        "_selection": selection,
        "_pool_values": np.array([r[key] for r in ranked_rows], dtype=np.float64),
    }


def _histogram_file(metric: str) -> str:
    """A histogram's file name: a ranking formula such as `1·vqascore + 0.5·ssim` becomes
    `hist_1_vqascore_0.5_ssim.png`, so every asset path is plain ASCII without spaces."""
    return "hist_" + re.sub(r"[^0-9A-Za-z_.-]+", "_", metric).strip("_") + ".png"


def build_report(
    run: str | Path,
    *,
    out: str | Path | None = None,
    datasets: Sequence[str | Path] = (),
    grid: int = 8,
    thumb_size: int = 192,
    target: int = 100_000,
    caption_sample: int = SAMPLE,
    reference: str | Path | None = None,
    reference_format: str = "auto",
    reference_images: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Write the run's HTML report (and its assets folder); returns the HTML file's path.

    With `reference`, the gap section compares the selected set with it, and `gap_json(out)` holds the
    numbers."""
    try:
        import matplotlib  # noqa: F401
        from jinja2 import Environment, PackageLoader, StrictUndefined
    except ImportError as exc:
        raise UserError(f"the report needs {exc.name}: pip install 'synthvlm[report]'") from None

    if grid < 1 or thumb_size < 16 or target < 1 or caption_sample < 1:
        raise UserError(
            "grid must be >= 1, thumbnail size >= 16, target >= 1 and caption sample >= 1 "
            f"(got {grid}, {thumb_size}, {target}, {caption_sample})"
        )
    run = Path(run)
    out = Path(out) if out is not None else default_out(run)
    data = collect(
        run,
        grid=grid,
        target=target,
        datasets=datasets,
        caption_sample=caption_sample,
        reference=reference,
        reference_format=reference_format,
        reference_images=reference_images,
        progress=progress,
    )
    assets = assets_dir(out)
    if assets.exists():
        shutil.rmtree(assets)  # the folder is the report's own: stale thumbnails must not linger
    assets.mkdir(parents=True)

    plots: dict[str, str] = {}
    scores, selection = data.pop("_scores"), data.pop("_selection")
    pool_values = data.pop("_pool_values")
    if scores is not None and scores.num_rows:
        for metric in data["metrics"]:
            name = _histogram_file(metric)
            plot_histogram(
                assets / name,
                metric=metric,
                all_values=scores.column(metric).to_numpy(),
                selected=selection.column(metric).to_numpy() if selection is not None else np.zeros(0),
                cutoff=data["cutoff"] if metric == data["key"] else None,
            )
            plots[metric] = f"{assets.name}/{name}"
        plot_keep_rate(
            assets / "keep_rate.png",
            values=pool_values,
            key=data["key"],
            cutoff=data["cutoff"],
            selected=data["selected"],
        )
        plots["keep_rate"] = f"{assets.name}/keep_rate.png"
    data["gap"]["plots"] = {}
    for side, (real, chosen, rest) in (data["gap"].pop("_map") or {}).items():
        file = f"gap_map_{side}.png"
        plot_embedding_map(assets / file, side=side, reference=real, selected=chosen, rest=rest)
        data["gap"]["plots"][side] = f"{assets.name}/{file}"
    for stat in data["captions"]["filters"] if data["captions"] else []:
        file = f"stat_{stat['name']}.png"
        plot_caption_statistic(assets / file, stat=stat, values=stat.pop("_values"))
        stat["plot"] = f"{assets.name}/{file}"

    unique = {r["key"]: r for rows in data["grids"].values() for r in rows}
    thumbs = _with_progress(
        len(unique),
        progress,
        lambda step: make_thumbnails(
            run, list(unique.values()), assets / "thumbs", size=thumb_size, on_done=step
        ),
    )
    for rows in data["grids"].values():
        for row in rows:
            row["thumb"] = f"{assets.name}/thumbs/{thumbs[row['key']]}" if row["key"] in thumbs else None

    env = Environment(
        loader=PackageLoader("synthvlm.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda v, digits=4: "–" if v is None else f"{v:.{digits}f}"
    env.filters["bound"] = lambda v: "no limit" if abs(v) >= sys.maxsize else f"{v:g}"
    html = env.get_template("report.html.j2").render(**data, plots=plots, grid_titles=GRIDS)
    if data["gap"]["result"] is not None:
        fsio.write_json(gap_json(out), data["gap"]["result"])
    fsio.write_bytes(out, html.encode("utf-8"))
    return out
