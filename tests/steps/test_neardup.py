"""MinHash LSH near-duplicates: signatures and clusters equal datasketch's, and the stage records clusters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from synthvlm.config import RunConfig
from synthvlm.pipeline import run, status
from synthvlm.steps.neardup import (
    band_keys,
    cluster_roots,
    jaccard,
    lsh_params,
    plan_near_duplicates,
    shingles,
    signatures,
)

datasketch = pytest.importorskip("datasketch")

WORDS = "a dog cat runs sits on the grass red blue ball child man woman street beach near".split()


def _captions(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    base = [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) for _ in range(n // 2)]
    out = []
    for i, text in enumerate(base):
        out.append(text)
        words = text.split()
        words[int(rng.integers(len(words)))] = str(WORDS[i % len(WORDS)])  # one word changed
        out.append(" ".join(words).upper() + "!")
    return out


@pytest.mark.parametrize(("unit", "size"), [("word", 3), ("word", 1), ("char", 5)])
def test_signatures_equal_datasketch_minhash(unit, size):
    caps = [*_captions(60), "", "x", "A dog.", "a  DOG"]
    sigs = signatures(caps, unit=unit, size=size, num_perm=64, seed=7)
    for caption, sig in zip(caps, sigs, strict=True):
        m = datasketch.MinHash(num_perm=64, seed=7)
        m.update_batch([s.encode() for s in shingles(caption, unit=unit, size=size)])
        np.testing.assert_array_equal(sig, m.hashvalues)


def test_shingles_short_text_is_one_shingle():
    assert shingles("A dog, running!", unit="word", size=3) == ["a dog running"]
    assert shingles("A dog is running fast", unit="word", size=3) == [
        "a dog is",
        "dog is running",
        "is running fast",
    ]
    assert shingles("", unit="word", size=3) == [""]
    assert shingles("Ab c", unit="char", size=3) == ["ab ", "b c"]
    with pytest.raises(ValueError, match="valid: char, word"):
        shingles("x", unit="token", size=3)


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.8, 128), (0.7, 256), (0.5, 64)])
def test_band_split_is_datasketchs(threshold, num_perm):
    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert lsh_params(threshold=threshold, num_perm=num_perm) == (lsh.b, lsh.r)


def test_clusters_equal_datasketch_lsh_components():
    caps = _captions(400, seed=3)
    bands, rows = lsh_params(threshold=0.5, num_perm=64)
    sigs = signatures(caps, num_perm=64)
    lsh = datasketch.MinHashLSH(threshold=0.5, num_perm=64)
    hashes = []
    for i, sig in enumerate(sigs):
        m = datasketch.MinHash(num_perm=64, hashvalues=sig, scheme="affine32")
        lsh.insert(i, m)
        hashes.append(m)
    parent = list(range(len(caps)))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            a, b = find(i), find(j)
            parent[max(a, b)] = min(a, b)
    expected = np.array([find(i) for i in range(len(caps))])
    got = cluster_roots(band_keys(sigs, bands=bands, rows=rows))
    np.testing.assert_array_equal(got, expected)
    assert (got != np.arange(len(caps))).sum() > 50  # the perturbed copies do cluster


def test_plan_keeps_first_in_order_and_chains():
    caps = [
        "a red ball on the green grass near the house",
        "two cats sleep on a sofa",
        "A red ball on the green grass near the house!",
        "a red ball on the green grass near the big house",
        "two cats sleep on a sofa",
    ]
    plan = plan_near_duplicates(caps, threshold=0.5, num_perm=128)
    np.testing.assert_array_equal(plan.representative, [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(plan.keep, [True, True, False, False, False])
    assert jaccard(caps[0], caps[3], unit="word", size=3) == 7 / 10


def _pool(path: Path, captions: list[str]) -> None:
    path.write_text("".join(json.dumps({"id": f"c{i}", "caption": c}) + "\n" for i, c in enumerate(captions)))


def test_stage_records_cluster_and_jaccard(tmp_path):
    caps = [
        "A man rides a red bicycle down a busy city street today.",
        "A brown dog jumps over a fallen log in the forest.",
        "a man rides a red bicycle down a busy city street",
        "A man rides a red bicycle down a busy city street at noon.",
        "Children play football on a sandy beach at sunset.",
        "A MAN RIDES A RED BICYCLE DOWN A BUSY CITY STREET TODAY",
    ]
    _pool(tmp_path / "pool.jsonl", caps)
    config = RunConfig.model_validate(
        {
            "ingest": {"inputs": [str(tmp_path / "pool.jsonl")], "shard_rows": 2},
            "curate": {"recipe": "none", "near_dup": {"threshold": 0.5, "num_perm": 128}},
        }
    )
    run(tmp_path / "run", config, stages=["ingest", "curate"], progress=False)
    curate = tmp_path / "run" / "curate"
    assert json.loads((curate / "phases.json").read_text()) == [
        "filter",
        "dedup-plan",
        "dedup",
        "neardup-plan",
        "neardup",
    ]
    kept = [
        r
        for p in sorted((curate / "data").glob("*.parquet"))
        for r in pq.read_table(p).column("id").to_pylist()
    ]
    assert kept == ["c0", "c1", "c4"]
    rejected = [
        r for p in sorted((curate / "rejected").glob("*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    by_id = {r["id"]: r for r in rejected}
    assert by_id["c5"]["reason"] == "duplicate_text" and by_id["c5"]["detail"] == "duplicate of c0"
    assert by_id["c2"]["reason"] == "near_duplicate" and by_id["c2"]["detail"] == "cluster c0"
    assert by_id["c2"]["value"] == pytest.approx(9 / 10)
    assert by_id["c3"]["detail"] == "cluster c0" and by_id["c3"]["value"] == pytest.approx(9 / 12)
    funnel = status(tmp_path / "run")["stages"]["curate"]
    assert funnel["in"] == 6 and funnel["kept"] == 3
    assert funnel["dropped"] == {"duplicate_text": 1, "near_duplicate": 2}
    assert funnel["tasks_done"] == funnel["tasks_total"] == 3 + 1 + 3 + 1 + 3
