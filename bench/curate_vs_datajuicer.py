"""The paper's Table 1 caption filters, ours versus Data-Juicer's own operators: agreement and throughput.

The Flickr8k captions are replicated with deterministic perturbations (case, symbol soup, repeats, flagged
words, tabs, emoji, missing spaces, ...) to >= 1M captions. Each side computes every filter's statistic on
every caption (Data-Juicer's way; the recipe's first-drop attribution is not timed). Data-Juicer runs in its
own virtualenv, built from `datajuicer-requirements.txt` (every package pinned) and checked on first use,
in a subprocess (`datajuicer_ops.py`) that writes its statistics, keep masks and timings to an .npz file;
its lazy loader is stopped from installing packages at run time, and it gets our flagged-word list through
`flagged_words_dir`, so the two sides see the same inputs. Both sides run on one thread; throughput is
captions per CPU second of the process (other jobs on a shared machine do not count), wall-clock figures
are in the notes. `--check-venv` checks (or builds, then checks) the venv without running the benchmark.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, SHARED_DATA, describe, row, table

DJ_VENV = Path(os.environ.get("SYNTHVLM_DJ_VENV", "/tmp/djvenv"))
DJ_REQUIREMENTS = Path(__file__).with_name("datajuicer-requirements.txt")
DJ_WORKER = Path(__file__).with_name("datajuicer_ops.py")
MISSING = 3  # datajuicer_ops.py's exit status for a missing package
DJ_MARKER = ".synthvlm-bench"  # in the venv: the sha256 of the requirements it was built and checked from
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


class VenvError(RuntimeError):
    """Data-Juicer's venv could not be built or is missing a package; the message says which."""


def _worker(python: Path, mode: str, words: Path, *args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run(
        [str(python), str(DJ_WORKER), mode, str(words), json.dumps(DJ_OPS), *args],
        env=env,
        cwd=words.parent,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != MISSING:  # that one is a single line, repeated in the error below
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise VenvError(f"Data-Juicer ({mode}) failed in {python.parents[1]}: {last[0]}")


def _words_dir(tmp: Path, flagged: list[str]) -> Path:
    words = tmp / "words"
    words.mkdir()
    (words / "flagged_words.json").write_text(json.dumps({"en": flagged}), encoding="utf-8")
    return words


def check_venv(python: Path, flagged: list[str]) -> None:
    """Build every Data-Juicer operator the benchmark uses and run it on two captions, in its venv."""
    with tempfile.TemporaryDirectory(prefix="dj-check-") as tmp:
        _worker(python, "check", _words_dir(Path(tmp), flagged))


def _requirements_hash() -> str:
    return hashlib.sha256(DJ_REQUIREMENTS.read_bytes()).hexdigest()


def _built(venv: Path) -> bool:
    """Whether `venv` was built, and passed `check_venv`, from today's requirements file."""
    marker = venv / DJ_MARKER
    return marker.exists() and marker.read_text().strip() == _requirements_hash()


def ensure_venv(venv: Path, flagged: list[str]) -> Path:
    """Data-Juicer's python: the venv at `venv` if it was built and checked from today's requirements,
    else (missing, half-built, or from other pins) a new one: CPU torch alone first, then every pinned
    package of `datajuicer-requirements.txt`, then `check_venv`, then the marker."""
    python = venv / "bin" / "python"
    if _built(venv):
        return python
    if venv.exists():
        if not (venv / "pyvenv.cfg").exists():
            raise VenvError(f"{venv} exists and is not a virtualenv; set SYNTHVLM_DJ_VENV to another path")
        print(f"[curate_vs_datajuicer] rebuilding {venv} (not built from today's pins)", file=sys.stderr)
        shutil.rmtree(venv)
    print(f"[curate_vs_datajuicer] building Data-Juicer's venv at {venv}", file=sys.stderr, flush=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for command in (
        ["python3.11", "-m", "venv", str(venv)],
        [*pip, "torch==2.13.0"],  # the local CPU build, alone; pinned again in the file
        [*pip, "-r", str(DJ_REQUIREMENTS)],
    ):
        if subprocess.run(command).returncode != 0:
            raise VenvError(f"building {venv} failed at `{' '.join(command)}` (its output is above)")
    check_venv(python, flagged)
    (venv / DJ_MARKER).write_text(_requirements_hash() + "\n")
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


Seconds = dict[str, dict[str, float]]  # filter -> {"wall": s, "cpu": s}


def ours(captions: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Seconds]:
    """Every paper filter's statistic and keep mask on every caption, with wall and CPU seconds per filter."""
    from synthvlm.steps.filters import RECIPES, build_filter

    values, keeps, seconds = {}, {}, {}
    for name, params in RECIPES["synthvlm"]:
        f = build_filter(name, params)
        f.compute(captions[:100])  # tables built once, outside the timing
        t0, c0 = time.perf_counter(), time.process_time()
        values[name] = f.compute(captions)
        keeps[name] = f.keep(values[name])
        seconds[name] = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
    return values, keeps, seconds


def peer(
    python: Path, captions: list[str], flagged: list[str], *, batch: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Seconds]:
    """The same, computed by Data-Juicer's operators in its own venv."""
    with tempfile.TemporaryDirectory(prefix="dj-bench-") as tmp:
        words = _words_dir(Path(tmp), flagged)
        (Path(tmp) / "captions.json").write_text(json.dumps(captions), encoding="utf-8")
        out = Path(tmp) / "out.npz"
        _worker(python, "run", words, str(Path(tmp) / "captions.json"), str(out), str(batch))
        data = np.load(out)
        seconds = json.loads(str(data["seconds"]))
        values = {n: data[n + ".value"] for n in DJ_OPS}
        keeps = {n: data[n + ".keep"] for n in DJ_OPS}
    return values, keeps, seconds


def _classes(captions: list[str], rows: np.ndarray, ours_keep: np.ndarray) -> str:
    if rows.size == 0:
        return "no disagreement"
    examples = "; ".join(f"{captions[i]!r} ours={'keep' if ours_keep[i] else 'drop'}" for i in rows[:3])
    return f"{rows.size} disagreements, e.g. {examples}"


def prepare() -> Path | None:
    """Data-Juicer's python, built and checked, when the benchmark will run (Flickr8k present), else None."""
    if not FLICKR.exists():
        return None
    return ensure_venv(DJ_VENV, flagged_words())


def flagged_words() -> list[str]:
    """Our flagged-word list; Data-Juicer gets the same one through ``flagged_words_dir``."""
    return (REPO / "src" / "synthvlm" / "data" / "flagged_words_en.txt").read_text().split()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Agreement and speed of each paper filter on >= 1M perturbed Flickr8k captions (--quick: ~200k)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 copies of Flickr8k (~200k captions)")
    parser.add_argument("--copies", type=int, default=25, help="copies of Flickr8k (25: 1,011,500 captions)")
    parser.add_argument("--batch", type=int, default=1000, help="Data-Juicer batch size (its default)")
    parser.add_argument("--no-install", action="store_true", help="skip instead of creating the venv")
    parser.add_argument(
        "--check-venv",
        action="store_true",
        help="only build (if needed) and check Data-Juicer's venv: every operator used is built and run",
    )
    args = parser.parse_args(argv)
    flagged = flagged_words()
    if args.check_venv:  # a venv built now was checked while building; an existing one is checked here
        python = DJ_VENV / "bin" / "python"
        if args.no_install or _built(DJ_VENV):
            if not python.exists():
                raise VenvError(f"no Data-Juicer venv at {DJ_VENV}")
            check_venv(python, flagged)
        else:
            ensure_venv(DJ_VENV, flagged)
        return []
    if not FLICKR.exists():
        print(f"[curate_vs_datajuicer] skipped: {FLICKR} not found", file=sys.stderr)
        return []
    if args.no_install and not (DJ_VENV / "bin" / "python").exists():
        print(f"[curate_vs_datajuicer] skipped: no Data-Juicer venv at {DJ_VENV}", file=sys.stderr)
        return []
    python = DJ_VENV / "bin" / "python" if args.no_install else ensure_venv(DJ_VENV, flagged)
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
                ours=n / our_s[name]["cpu"],
                peer=n / dj_s[name]["cpu"],
                peer_name=PEER,
                unit="captions/CPU s",
                higher_is_better=True,
                notes=f"keep/drop agreement {agreement:.6%} ({_classes(captions, differ, our_keep[name])}); "
                f"statistic differs on {value_diff.size} captions; kept ours {int(our_keep[name].sum()):,}, "
                f"Data-Juicer {int(dj_keep[name].sum()):,}; {_wall(our_s[name], dj_s[name], n)}",
            )
        )
    ours_all = np.logical_and.reduce([our_keep[k] for k in DJ_OPS])
    dj_all = np.logical_and.reduce([dj_keep[k] for k in DJ_OPS])
    total_ours, total_dj = _total(our_s), _total(dj_s)
    rows.append(
        row(
            f"all five filters, {n:,} captions",
            ours=n / total_ours["cpu"],
            peer=n / total_dj["cpu"],
            peer_name=PEER,
            unit="captions/CPU s",
            higher_is_better=True,
            notes=f"recipe keep agreement {1 - int((ours_all != dj_all).sum()) / n:.6%}; kept ours "
            f"{int(ours_all.sum()):,}, Data-Juicer {int(dj_all.sum()):,}; CPU seconds ours "
            f"{total_ours['cpu']:.1f}, Data-Juicer {total_dj['cpu']:.1f}; {_wall(total_ours, total_dj, n)}",
        )
    )
    return rows


def _total(seconds: Seconds) -> dict[str, float]:
    return {k: sum(s[k] for s in seconds.values()) for k in ("wall", "cpu")}


def _wall(ours: dict[str, float], peer: dict[str, float], n: int) -> str:
    """The same comparison on wall-clock time (includes waiting for a core other jobs hold)."""
    return (
        f"wall clock: ours {n / ours['wall']:.3g}/s, Data-Juicer {n / peer['wall']:.3g}/s, "
        f"{peer['wall'] / ours['wall']:.2f}x"
    )


if __name__ == "__main__":
    try:
        result = main()
    except VenvError as error:
        raise SystemExit(f"[curate_vs_datajuicer] {error}") from None
    if result:
        print(describe())
        print()
        print(table(result))
