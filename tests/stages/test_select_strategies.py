"""The select stage's ranking key as a weighted sum, the safety drop, and the balanced strategy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthvlm.config import parse_config
from synthvlm.core import schema
from synthvlm.core.errors import UserError
from synthvlm.core.fsio import write_table
from synthvlm.stages.select import SelectStage


def _score_shard(run, rows, *, scorers=(), index=0):
    """Score rows (caption_id, candidate_index, clip, ssim, extra columns...) as score shard `index`."""
    table_schema = schema.score_schema(list(scorers))
    full = []
    for r in rows:
        row = {
            "key": f"{r['caption_id']}-{r['candidate_index']}",
            "caption": "a caption",
            "image_shard": "generate/images/part-00000.tar",
            "image_name": f"{r['caption_id']}-{r['candidate_index']}.jpg",
            "weighted": r["clip"] + 0.5 * r["ssim"],
            **r,
        }
        full.append(row)
    write_table(
        run / "score" / "data" / f"part-{index:05d}.parquet", pa.Table.from_pylist(full, table_schema)
    )


def _select(run, **select):
    config = parse_config({"select": select, "score": {"scorers": select.pop("_scorers", {})}}, origin="test")
    stage = SelectStage(run, config)
    stats = stage.run_task(stage.tasks("select")[0])
    selected = pq.read_table(stage.layout.shard(0)).to_pylist()
    rejected = pq.read_table(stage.layout.rejected("select-00000")).to_pylist()
    return stats, [r["key"] for r in selected], {r["id"]: r["reason"] for r in rejected}


def test_a_weighted_sum_key_ranks_as_its_formula(tmp_path):
    rows = [
        {"caption_id": "a", "candidate_index": 0, "clip": 0.30, "ssim": 0.10},
        {"caption_id": "b", "candidate_index": 0, "clip": 0.20, "ssim": 0.50},
        {"caption_id": "c", "candidate_index": 0, "clip": 0.25, "ssim": 0.20},
    ]
    _score_shard(tmp_path, rows)
    # {clip: 1, ssim: 0.5} is `weighted`: b 0.45, c 0.35, a 0.35 -> ties by caption id.
    stats, keys, _ = _select(tmp_path, key={"clip": 1.0, "ssim": 0.5}, top_k=3)
    assert keys == ["b-0", "a-0", "c-0"]
    assert _select(tmp_path, key="weighted", top_k=3)[1] == keys
    # ssim - clip: b 0.30, c -0.05, a -0.20; the cut-off is the key's value, in the record too.
    stats, keys, reasons = _select(tmp_path, key={"ssim": 1.0, "clip": -1.0}, top_k=2)
    assert keys == ["b-0", "c-0"] and reasons == {"a-0": "not_selected"}
    assert stats.extra["cutoff"] == 0.20 - 0.25
    got = pq.read_table(tmp_path / "select" / "rejected" / "select-00000.parquet").column("value").to_pylist()
    assert got == [0.10 - 0.30]


def test_a_key_naming_a_column_the_run_does_not_score_is_refused():
    with pytest.raises(UserError) as info:
        parse_config({"select": {"key": "vqascore"}}, origin="recipe.yaml")
    assert str(info.value) == (
        "recipe.yaml: invalid config: select.key names vqascore, which this run does not score; score "
        "columns: clip, ssim, weighted (opt-in scorers go under score.scorers)"
    )
    with pytest.raises(UserError, match="select.key names siglip, which this run does not score"):
        parse_config({"select": {"key": {"siglip": 1.0, "ssim": 0.5}}}, origin="test")
    with pytest.raises(UserError, match="needs at least one column"):
        parse_config({"select": {"key": {}}}, origin="test")
    config = parse_config(
        {"select": {"key": {"siglip": 1.0}}, "score": {"scorers": {"siglip": {}}}}, origin="test"
    )
    assert config.select.key == {"siglip": 1.0}


def test_flagged_pairs_are_dropped_as_unsafe_before_best_of_n(tmp_path):
    rows = [
        {"caption_id": "a", "candidate_index": 0, "clip": 0.9, "ssim": 0.0, "nsfw": True, "nsfw_margin": 0.2},
        {
            "caption_id": "a",
            "candidate_index": 1,
            "clip": 0.5,
            "ssim": 0.0,
            "nsfw": False,
            "nsfw_margin": -0.1,
        },
        {
            "caption_id": "b",
            "candidate_index": 0,
            "clip": 0.7,
            "ssim": 0.0,
            "nsfw": False,
            "nsfw_margin": -0.3,
        },
        {
            "caption_id": "b",
            "candidate_index": 1,
            "clip": 0.6,
            "ssim": 0.0,
            "nsfw": False,
            "nsfw_margin": -0.2,
        },
    ]
    _score_shard(tmp_path, rows, scorers=["nsfw"])
    stats, keys, reasons = _select(tmp_path, top_k=10, _scorers={"nsfw": {}})
    assert keys == ["b-0", "a-1"]  # a's best candidate is unsafe: its next one stands in
    assert reasons == {"a-0": "unsafe", "b-1": "not_best_of_n"}
    assert (stats.n_in, stats.kept, stats.dropped) == (4, 2, {"not_best_of_n": 1, "unsafe": 1})


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_balanced_drops_near_duplicate_images_and_caps_each_cluster(tmp_path):
    # Two directions: eight images near e0 (two of them near-copies of a better one), two near e1.
    e0, e1 = np.eye(4)[0], np.eye(4)[1]
    vectors, rows = [], []
    for i in range(8):
        v = _unit(e0 + 0.04 * np.eye(4)[2 + i % 2] * (i + 1))
        if i in (3, 5):  # near-copies of image 0
            v = _unit(vectors[0] + 1e-3 * np.eye(4)[3])
        vectors.append(v)
        rows.append({"caption_id": f"a{i}", "candidate_index": 0, "clip": 1.0 - i / 100, "ssim": 0.0})
    for i in range(2):
        vectors.append(_unit(e1 + 0.2 * np.eye(4)[2 + i]))
        rows.append({"caption_id": f"b{i}", "candidate_index": 0, "clip": 0.5 - i / 100, "ssim": 0.0})
    _score_shard(tmp_path, rows)
    keys = [f"{r['caption_id']}-0" for r in rows]
    v = np.asarray(vectors)
    write_table(tmp_path / "score" / "embeddings" / "part-00000.parquet", schema.embeddings_table(keys, v, v))

    balanced = {"clusters": 2, "epsilon": 1e-4, "iterations": 10}
    stats, chosen, reasons = _select(tmp_path, strategy="balanced", balanced=balanced, top_k=6)
    # a3 and a5 copy a0: dropped. Six of the eight left: cap t = 4 (min(6, 4) + min(2, 4) = 6), so the a
    # cluster gives its best four and both b images come in; a6 and a7 would have been in a plain top 6.
    assert chosen == ["a0-0", "a1-0", "a2-0", "a4-0", "b0-0", "b1-0"]
    assert reasons == {
        "a3-0": "near_duplicate_image",
        "a5-0": "near_duplicate_image",
        "a6-0": "cluster_quota",
        "a7-0": "cluster_quota",
    }
    assert stats.dropped == {"cluster_quota": 2, "near_duplicate_image": 2}
    # A plain top 6 of the same rows takes the a cluster's six best and no b image.
    assert _select(tmp_path, top_k=6)[1] == [f"a{i}-0" for i in range(6)]


def test_balanced_needs_the_embeddings(tmp_path):
    with pytest.raises(UserError, match="set score.embeddings: true"):
        parse_config({"select": {"strategy": "balanced"}, "score": {"embeddings": False}}, origin="test")
    # A run scored before the embeddings existed has none: select says how to get them.
    _score_shard(tmp_path, [{"caption_id": "a", "candidate_index": 0, "clip": 0.3, "ssim": 0.1}])
    with pytest.raises(UserError, match="needs the CLIP embeddings the score stage keeps"):
        _select(tmp_path, strategy="balanced", top_k=1)
