"""Runs inside Data-Juicer's own venv (never the project's): its operators on captions, or a venv check.

    python datajuicer_ops.py check WORDS_DIR OPS_JSON
    python datajuicer_ops.py run WORDS_DIR OPS_JSON CAPTIONS_JSON OUT_NPZ BATCH

OPS_JSON maps a name to (Data-Juicer filter class, constructor parameters). `check` builds every operator
and runs it on two captions; `run` computes every operator's statistic and keep mask on every caption and
writes them to OUT_NPZ with each operator's wall and CPU seconds. Either way Data-Juicer's lazy loader is
stopped from installing packages at run time: a missing package ends the process (exit 3) with its name.
"""

from __future__ import annotations

import json
import sys
import time

MISSING = 3
refused: list[str] = []


def _refuse(cls, package_spec, pip_args=None):
    refused.append(str(package_spec))
    raise RuntimeError(f"Data-Juicer tried to install {package_spec!r} at run time; refused")


def _missing(error: BaseException) -> str | None:
    """The package a failed import or refused install was after, from the error or its causes."""
    if refused:
        return refused[0]
    while error is not None:
        if isinstance(error, ModuleNotFoundError) and error.name:
            return error.name.split(".")[0]
        error = error.__cause__ or error.__context__
    return None


def _operators(words_dir: str, ops: dict) -> dict:
    import data_juicer.ops.filter as filters

    built = {}
    for name, (cls, params) in ops.items():
        if cls == "FlaggedWordFilter":
            params = {**params, "flagged_words_dir": words_dir}
        built[name] = getattr(filters, cls)(**params)
    return built


def _apply(op, texts: list[str]) -> tuple[list, list]:
    from data_juicer.utils.constant import Fields

    samples = {"text": texts, Fields.stats: [{} for _ in texts]}
    samples = op.compute_stats_batched(samples)
    keep = list(op.process_batched(samples))
    return [next(iter(s.values())) for s in samples[Fields.stats]], keep


def check(words_dir: str, ops: dict) -> None:
    """Build every operator and run it on two captions (what the benchmark needs, nothing timed)."""
    for name, op in _operators(words_dir, ops).items():
        stats, keep = _apply(op, ["A dog runs on the beach .", "a a a a a a a a a a a a a a a a a a a a"])
        assert len(stats) == len(keep) == 2, name
    print(f"Data-Juicer venv OK: {', '.join(cls for cls, _ in ops.values())} built and ran")


def run(words_dir: str, ops: dict, captions_path: str, out: str, batch: int) -> None:
    """Every operator on every caption, in Data-Juicer's batches; statistics, keep masks and seconds."""
    import numpy as np

    captions = json.load(open(captions_path, encoding="utf-8"))
    result, seconds = {}, {}
    for name, op in _operators(words_dir, ops).items():
        stats, keep = [], []
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(captions), batch):
            s, k = _apply(op, captions[start : start + batch])
            stats += s
            keep += k
        seconds[name] = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
        result[name + ".value"] = np.asarray(stats, dtype=np.float64)
        result[name + ".keep"] = np.asarray(keep, dtype=bool)
    np.savez(out, seconds=json.dumps(seconds), **result)


def main(argv: list[str]) -> int:
    """Install the refusal, then check or run; a missing package is a one-line error, exit 3."""
    mode, words_dir, ops = argv[0], argv[1], json.loads(argv[2])
    try:
        from data_juicer.utils import lazy_loader

        # The LazyLoader installs a missing module with `uv pip install` (pip as fallback) on first
        # attribute access; every install goes through this classmethod, so replacing it turns a missing
        # module into an error instead of a silent change to the venv (uv would not keep the torch pin).
        lazy_loader.LazyLoader._install_package = classmethod(_refuse)
        if mode == "check":
            check(words_dir, ops)
        else:
            run(words_dir, ops, argv[3], argv[4], int(argv[5]))
    except Exception as error:  # noqa: BLE001 - reported with the missing package's name when there is one
        package = _missing(error)
        if package is None:
            raise
        print(
            f"Data-Juicer's venv ({sys.prefix}) lacks the package {package!r} "
            f"({type(error).__name__}: {error}); add it, pinned, to bench/datajuicer-requirements.txt",
            file=sys.stderr,
        )
        return MISSING
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
