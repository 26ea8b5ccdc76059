"""Selection edge cases: ties, K beyond the pool, every candidate failed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from synthvlm.config import RunConfig
from synthvlm.stages.select import SelectStage, cut, rank_candidates


def _light(rows):
    return pa.table(
        {
            "caption_id": pa.array([r[0] for r in rows], pa.string()),
            "candidate_index": pa.array([r[1] for r in rows], pa.int32()),
            "weighted": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def test_best_of_n_then_ties_broken_by_id():
    light = _light([("b", 0, 0.5), ("a", 0, 0.5), ("a", 1, 0.9), ("b", 1, 0.9), ("c", 0, 0.7), ("c", 1, 0.7)])
    order = rank_candidates(light, key="weighted", best_of_n=True)
    # a/1 and b/1 tie at 0.9 -> caption id order; c's two candidates tie -> candidate 0.
    assert order.tolist() == [2, 3, 4]
    assert rank_candidates(light, key="weighted", best_of_n=False).tolist() == [2, 3, 4, 5, 1, 0]


def _sorted_best_of_n(light):
    """The definition by sorting: per caption the first row by (value desc, candidate), then value desc,
    caption id; NaN ranks last, -0.0 ties with 0.0 (NumPy's order of -value)."""
    caption = np.unique(light.column("caption_id").to_numpy(zero_copy_only=False), return_inverse=True)[1]
    value = light.column("weighted").to_numpy()
    candidate = light.column("candidate_index").to_numpy()
    by_caption = np.lexsort((candidate, -value, caption))
    first = np.ones(len(by_caption), dtype=bool)
    first[1:] = caption[by_caption][1:] != caption[by_caption][:-1]
    best = by_caption[first]
    return best[np.lexsort((caption[best], -value[best]))]


@pytest.mark.parametrize("seed", range(6))
def test_best_of_n_equals_the_sorting_definition_with_ties_zeros_infinities_and_nan(seed):
    rng = np.random.default_rng(seed)
    n = 300
    captions = rng.integers(0, 90, n)
    candidates = np.zeros(n, dtype=np.int64)
    for c in np.unique(captions):  # candidate indices unique within a caption, in shuffled order
        rows = np.flatnonzero(captions == c)
        candidates[rows] = rng.permutation(rows.size)
    pool = [0.25, 0.5, 0.5, -0.0, 0.0, np.inf, -np.inf, np.nan, -0.25] if seed % 2 else rng.random(9).round(1)
    values = rng.choice(pool, n)
    light = _light([(f"c{c}", k, v) for c, k, v in zip(captions, candidates, values, strict=True)])
    got = rank_candidates(light, key="weighted", best_of_n=True)
    assert got.tolist() == _sorted_best_of_n(light).tolist()
    assert len(got) == len(np.unique(captions))


def test_cut_modes():
    values = np.array([0.9, 0.8, 0.8, 0.1])
    assert cut(4, values, top_k=10, fraction=None, threshold=None) == 4  # K larger than the pool
    assert cut(4, values, top_k=2, fraction=None, threshold=None) == 2
    assert cut(4, values, top_k=None, fraction=0.5, threshold=None) == 2
    assert cut(4, values, top_k=None, fraction=0.3, threshold=None) == 2  # ceil(1.2)
    assert cut(4, values, top_k=None, fraction=None, threshold=0.8) == 3


def test_empty_pool_when_every_candidate_failed(tmp_path):
    from synthvlm.core import schema
    from synthvlm.core.fsio import write_table

    write_table(tmp_path / "score" / "data" / "part-00000.parquet", schema.SCORE.empty_table())
    stage = SelectStage(tmp_path, RunConfig())
    stats = stage.run_task(stage.tasks("select")[0])
    assert (stats.n_in, stats.kept, stats.dropped) == (0, 0, {})
    out = pa.parquet.read_table(stage.layout.shard(0))
    assert out.num_rows == 0 and out.schema == schema.SELECTION


@pytest.mark.parametrize("bad", [{"top_k": 3, "fraction": 0.5}, {"fraction": 1.5}, {"top_k": 0}])
def test_select_config_rejects_ambiguous_or_invalid_cuts(bad):
    from synthvlm.config import parse_config
    from synthvlm.core.errors import UserError

    with pytest.raises(UserError, match="invalid config: select"):
        parse_config({"select": bad}, origin="x.yaml")
