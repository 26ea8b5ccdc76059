"""Decontamination: n-gram overlap with evaluation captions, reported with the matching eval item."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from synthvlm.config import RunConfig
from synthvlm.pipeline import run, status
from synthvlm.steps.decontam import EvalIndex, EvalItem, ngrams


def test_ngrams_normalise_and_short_text():
    assert ngrams("A dog, running fast!", 3) == {"a dog running", "dog running fast"}
    assert ngrams("Two dogs", 3) == {"two dogs"}


def test_match_overlap_and_best_item():
    items = [
        EvalItem("a man rides a horse on the beach", "eval.txt", 1, None),
        EvalItem("a woman rides a horse on the beach at dawn", "eval.txt", 2, "w7"),
    ]
    index = EvalIndex(items, n=4)
    match = index.match("A woman rides a horse on the beach in winter.")
    # 7 four-grams; the first 5 occur in the eval set: item 2 holds all 5, item 1 only 3.
    assert match.overlap == pytest.approx(5 / 7)
    assert match.item is items[1]
    assert match.item.describe() == "eval.txt:2 (w7): a woman rides a horse on the beach at dawn"
    tie = index.match("rides a horse on the")  # both items hold both 4-grams: the first wins
    assert tie.overlap == 1.0 and tie.item is items[0]
    assert index.match("a cat sleeps on a warm windowsill") is None
    with pytest.raises(ValueError, match="at least 1"):
        EvalIndex(items, n=0)


def test_eval_files_in_any_ingest_format(tmp_path):
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"id": "k1", "caption": "a child flies a kite in a park"}) + "\n"
    )
    coco = {
        "images": [{"id": 5, "file_name": "x.jpg"}],
        "annotations": [{"id": 9, "image_id": 5, "caption": "a bowl of fruit on a wooden table"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    index = EvalIndex.from_files([str(tmp_path / "test.jsonl"), str(tmp_path / "coco.json")], n=3)
    assert len(index.items) == 2
    m = index.match("A bowl of fruit on a wooden table, top view")
    assert m.overlap == pytest.approx(6 / 8) and m.item.caption == "a bowl of fruit on a wooden table"


def test_stage_drops_contaminated_with_eval_item(tmp_path):
    (tmp_path / "eval.txt").write_text(
        "a child flies a red kite in a green park\nthe cat sleeps on the warm sofa\n"
    )
    pool = [
        "A child flies a red kite in a green park today.",
        "Two horses graze on a hillside near a barn.",
        "the cat sleeps on the warm sofa",
        "A cat sleeps on a sofa.",
    ]
    (tmp_path / "pool.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "caption": c}) + "\n" for i, c in enumerate(pool))
    )
    config = RunConfig.model_validate(
        {
            "ingest": {"inputs": [str(tmp_path / "pool.jsonl")]},
            "curate": {
                "recipe": "none",
                "dedup": False,
                "decontamination": {"eval_files": [str(tmp_path / "eval.txt")], "ngram": 5, "threshold": 0.5},
            },
        }
    )
    run(tmp_path / "run", config, stages=["ingest", "curate"], progress=False)
    curate = tmp_path / "run" / "curate"
    assert pq.read_table(curate / "data" / "part-00000.parquet").column("id").to_pylist() == ["p1", "p3"]
    rows = pq.read_table(curate / "rejected" / "decontam-00000.parquet").to_pylist()
    assert [(r["id"], r["reason"]) for r in rows] == [("p0", "contaminated"), ("p2", "contaminated")]
    assert rows[0]["value"] == pytest.approx(6 / 7)
    assert rows[0]["detail"] == f"{tmp_path / 'eval.txt'}:1: a child flies a red kite in a green park"
    assert rows[1]["value"] == 1.0
    funnel = status(tmp_path / "run")["stages"]["curate"]
    assert (funnel["in"], funnel["kept"], funnel["dropped"]) == (4, 2, {"contaminated": 2})
    fingerprint = json.loads((curate / "fingerprint.json").read_text())
    assert list(fingerprint["settings"]["decontamination"]["sha256"]) == [str(tmp_path / "eval.txt")]
