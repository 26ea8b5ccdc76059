"""The paper's Table 1 caption filters, ours versus Data-Juicer's own operators: agreement and throughput.

The Flickr8k captions are replicated with deterministic perturbations (case, symbol soup, repeats, flagged
words, tabs, emoji, missing spaces, ...) to >= 1M captions. Each side computes every filter's statistic on
every caption (Data-Juicer's way; the recipe's first-drop attribution is not timed). Data-Juicer runs in its
own virtualenv (created on first use) in a subprocess that writes its statistics, keep masks and timings to
an .npz file; its lazy loader is stopped from installing packages at run time, and it gets our flagged-word
list through `flagged_words_dir`, so the two sides see the same inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, SHARED_DATA, describe, row, table

DJ_VENV = Path(os.environ.get("SYNTHVLM_DJ_VENV", "/tmp/djvenv"))
FLICKR = SHARED_DATA / "flickr8k" / "Flickr8k.token.txt"
PEER = "Data-Juicer 1.6 operators (own venv, batched, single process)"
# Data-Juicer class name and constructor parameters of each paper filter (docs/curation.md, Table 1).
DJ_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "alphanumeric_filter": ("AlphanumericFilter", {"tokenization": False, "min_ratio": 0.60}),
    "character_repetition_filter": (
        "CharacterRepetitionFilter",
        {"rep_len": 10, "max_ratio": 0.09373663},
    ),
    "flagged_words_filter": (
        "FlaggedWordFilter",
        {"lang": "en", "tokenization": False, "max_ratio": 0.0},
    ),
    "special_characters_filter": (
        "SpecialCharactersFilter",
        {"min_ratio": 0.16534802, "max_ratio": 0.42023757},
    ),
    "word_repetition_filter": (
        "WordRepetitionFilter",
        {"lang": "en", "tokenization": False, "rep_len": 10, "max_ratio": 0.03085751},
    ),
}

# Runs inside Data-Juicer's venv: argv = captions.json, flagged-words dir, ops.json, out.npz, batch size.
_DJ_CHILD = r"""
import json, sys, time
import numpy as np
from data_juicer.utils import lazy_loader

def _refuse(cls, package_spec, pip_args=None):
    raise RuntimeError(f"Data-Juicer tried to install {package_spec!r} at run time; refused")

# Data-Juicer's LazyLoader installs a missing module with `uv pip install` (pip as fallback) on first
# attribute access; every install goes through this classmethod, so replacing it makes a missing module a
# plain error instead of a silent change to the venv.
lazy_loader.LazyLoader._install_package = classmethod(_refuse)
import data_juicer.ops.filter as F
from data_juicer.utils.constant import Fields

captions = json.load(open(sys.argv[1], encoding="utf-8"))
words_dir, ops, out, batch = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5])
result, seconds = {}, {}
for name, (cls, params) in ops.items():
    if cls == "FlaggedWordFilter":
        params = {**params, "flagged_words_dir": words_dir}
    op = getattr(F, cls)(**params)
    stats, keep = [], []
    t0 = time.perf_counter()
    for start in range(0, len(captions), batch):
        texts = captions[start:start + batch]
        samples = {"text": texts, Fields.stats: [{} for _ in texts]}
        samples = op.compute_stats_batched(samples)
        keep.extend(op.process_batched(samples))
        stats.extend(next(iter(s.values())) for s in samples[Fields.stats])
    seconds[name] = time.perf_counter() - t0
    result[name + ".value"] = np.asarray(stats, dtype=np.float64)
    result[name + ".keep"] = np.asarray(keep, dtype=bool)
np.savez(out, seconds=json.dumps(seconds), **result)
"""


def ensure_venv(venv: Path) -> Path:
    """Data-Juicer's python; creates its venv when missing (CPU torch pinned first, then aiohttp)."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pin:
        pin.write("torch==2.13.0\n")
    # `import data_juicer` needs aiohttp, which py-data-juicer does not declare.
    subprocess.run([*pip, "-c", pin.name, "py-data-juicer", "aiohttp"], check=True)
    os.unlink(pin.name)
    return python


def flickr_captions() -> list[str]:
    """The 40,460 Flickr8k captions (`IMAGE#N<TAB>caption`; the first line uses a space)."""
    lines = FLICKR.read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] if "\t" in line else line.split(None, 1)[1] for line in lines if line]


def _perturb(text: str, rng: random.Random, flagged: list[str]) -> str:
    words = text.split(" ")
    kind = rng.randrange(12)
    if kind == 0:
        return text.upper()
    if kind == 1:
        return f"{text} {text}"  # a repeated caption: character and word repetition
    if kind == 2:
        words.insert(rng.randrange(len(words) + 1), rng.choice(flagged).upper() + "!")
        return " ".join(words)
    if kind == 3:
        return text + " " + "".join(rng.choice("!#$%&*@~^…•€°×") for _ in range(rng.randrange(3, 30)))
    if kind == 4:
        return text.replace(" ", "")
    if kind == 5:
        i = rng.randrange(len(words))
        return " ".join(words[: i + 1] + [words[i]] * rng.randrange(1, 6) + words[i + 1 :])
    if kind == 6:
        return text.replace(" ", rng.choice(["\t", "\n", "\u00a0", "  ", "\r"]))
    if kind == 7:
        return text + " " + rng.choice(["😀", "🇫🇷", "👍🏽", "❤️", "Г", "π", "½", "①", "ǅ", "İstanbul"])
    if kind == 8:
        return "".join(c for c in text if c.isalnum() or c == " ")
    if kind == 9:
        return text + " " + rng.choice("ab-=") * rng.randrange(5, 40)
    if kind == 10:
        return text + f" ({rng.randrange(10**6)})"
    return " ".join(rng.sample(words, len(words)))


def build_captions(base: list[str], *, copies: int, flagged: list[str]) -> list[str]:
    """Copy 0 is the original pool; copy k perturbs caption i with a generator seeded by (k, i)."""
    out = list(base)
    for k in range(1, copies):
        out.extend(_perturb(t, random.Random(f"{k}:{i}"), flagged) for i, t in enumerate(base))
    return out


def ours(captions: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """Every paper filter's statistic and keep mask on every caption, with seconds per filter."""
    from synthvlm.steps.filters import RECIPES, build_filter

    values, keeps, seconds = {}, {}, {}
    for name, params in RECIPES["synthvlm"]:
        f = build_filter(name, params)
        f.compute(captions[:100])  # tables built once, outside the timing
        t0 = time.perf_counter()
        values[name] = f.compute(captions)
        keeps[name] = f.keep(values[name])
        seconds[name] = time.perf_counter() - t0
    return values, keeps, seconds


def peer(
    python: Path, captions: list[str], flagged: list[str], *, batch: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """The same, computed by Data-Juicer's operators in its own venv."""
    with tempfile.TemporaryDirectory(prefix="dj-bench-") as tmp:
        words = Path(tmp) / "words"
        words.mkdir()
        (words / "flagged_words.json").write_text(json.dumps({"en": flagged}), encoding="utf-8")
        (Path(tmp) / "captions.json").write_text(json.dumps(captions), encoding="utf-8")
        (Path(tmp) / "child.py").write_text(_DJ_CHILD, encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
        subprocess.run(
            [
                str(python),
                str(Path(tmp) / "child.py"),
                str(Path(tmp) / "captions.json"),
                str(words),
                json.dumps(DJ_OPS),
                str(Path(tmp) / "out.npz"),
                str(batch),
            ],
            check=True,
            env=env,
            cwd=tmp,
        )
        data = np.load(Path(tmp) / "out.npz")
        seconds = json.loads(str(data["seconds"]))
        values = {n: data[n + ".value"] for n in DJ_OPS}
        keeps = {n: data[n + ".keep"] for n in DJ_OPS}
    return values, keeps, seconds


def _classes(captions: list[str], rows: np.ndarray, ours_keep: np.ndarray) -> str:
    if rows.size == 0:
        return "no disagreement"
    examples = "; ".join(f"{captions[i]!r} ours={'keep' if ours_keep[i] else 'drop'}" for i in rows[:3])
    return f"{rows.size} disagreements, e.g. {examples}"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Agreement and speed of each paper filter on >= 1M perturbed Flickr8k captions (--quick: ~200k)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 copies of Flickr8k (~200k captions)")
    parser.add_argument("--copies", type=int, default=25, help="copies of Flickr8k (25: 1,011,500 captions)")
    parser.add_argument("--batch", type=int, default=1000, help="Data-Juicer batch size (its default)")
    parser.add_argument("--no-install", action="store_true", help="skip instead of creating the venv")
    args = parser.parse_args(argv)
    if not FLICKR.exists():
        print(f"[curate_vs_datajuicer] skipped: {FLICKR} not found", file=sys.stderr)
        return []
    if args.no_install and not (DJ_VENV / "bin" / "python").exists():
        print(f"[curate_vs_datajuicer] skipped: no Data-Juicer venv at {DJ_VENV}", file=sys.stderr)
        return []
    python = ensure_venv(DJ_VENV)
    flagged = (REPO / "src" / "synthvlm" / "data" / "flagged_words_en.txt").read_text().split()
    captions = build_captions(flickr_captions(), copies=5 if args.quick else args.copies, flagged=flagged)
    n = len(captions)
    our_values, our_keep, our_s = ours(captions)
    dj_values, dj_keep, dj_s = peer(python, captions, flagged, batch=args.batch)
    rows = []
    for name in DJ_OPS:
        differ = np.flatnonzero(our_keep[name] != dj_keep[name])
        value_diff = np.flatnonzero(our_values[name] != dj_values[name])
        agreement = 1.0 - differ.size / n
        rows.append(
            row(
                f"{name}, {n:,} captions",
                ours=n / our_s[name],
                peer=n / dj_s[name],
                peer_name=PEER,
                unit="captions/s",
                higher_is_better=True,
                notes=f"keep/drop agreement {agreement:.6%} ({_classes(captions, differ, our_keep[name])}); "
                f"statistic differs on {value_diff.size} captions; kept ours {int(our_keep[name].sum()):,}, "
                f"Data-Juicer {int(dj_keep[name].sum()):,}",
            )
        )
    ours_all = np.logical_and.reduce([our_keep[k] for k in DJ_OPS])
    dj_all = np.logical_and.reduce([dj_keep[k] for k in DJ_OPS])
    total_ours, total_dj = sum(our_s.values()), sum(dj_s.values())
    rows.append(
        row(
            f"all five filters, {n:,} captions",
            ours=n / total_ours,
            peer=n / total_dj,
            peer_name=PEER,
            unit="captions/s",
            higher_is_better=True,
            notes=f"recipe keep agreement {1 - int((ours_all != dj_all).sum()) / n:.6%}; kept ours "
            f"{int(ours_all.sum()):,}, Data-Juicer {int(dj_all.sum()):,}; seconds ours {total_ours:.1f}, "
            f"Data-Juicer {total_dj:.1f}",
        )
    )
    return rows


if __name__ == "__main__":
    result = main()
    print(describe())
    print()
    print(table(result))
