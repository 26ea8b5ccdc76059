"""Causal-LM perplexity: batched values equal a one-caption-at-a-time reference; the stage drops above max."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from synthvlm.config import RunConfig
from synthvlm.core.errors import UserError
from synthvlm.models.registry import location
from synthvlm.pipeline import run, status
from synthvlm.steps.perplexity import KenlmScorer, PerplexityScorer

CAPTIONS = [
    "A dog runs.",
    "a",
    "",
    "zzzz qqqq xxxx",
    "A dog runs on the grass near the river today.",
    "Yes No Yes",
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return location("builtin:tiny-lm", models_dir=tmp_path_factory.mktemp("models"))


@functools.cache
def _load(model_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()


def _reference(model_dir: str, caption: str) -> float:
    """exp(mean NLL) of BOS + caption tokens, one caption, no padding: transformers' own loss."""
    import torch

    tok, model = _load(model_dir)
    ids = torch.tensor([[tok.bos_token_id, *tok(caption, add_special_tokens=False)["input_ids"]]])
    if ids.shape[1] < 2:
        return math.nan
    with torch.inference_mode():
        return math.exp(float(model(input_ids=ids, labels=ids).loss))


def test_batched_equals_reference(tiny_lm):
    batched = PerplexityScorer(tiny_lm, batch_size=4).perplexities(CAPTIONS)
    single = PerplexityScorer(tiny_lm, batch_size=1).perplexities(CAPTIONS)
    expected = np.array([_reference(tiny_lm, c) for c in CAPTIONS])
    np.testing.assert_allclose(batched, expected, rtol=1e-5)
    np.testing.assert_allclose(single, expected, rtol=1e-5)
    assert np.isnan(batched[2])  # "" has nothing to predict after BOS
    assert 150 < batched[0] < 400  # a random model over a 264-token vocabulary is near-uniform


def test_max_tokens_cuts_captions(tiny_lm):
    long = "A dog runs on the grass near the river today."
    cut = PerplexityScorer(tiny_lm, max_tokens=4).perplexities([long])[0]
    assert cut == pytest.approx(_reference(tiny_lm, "A dog "), rel=1e-5)  # BOS, "A", "Ġdog", "Ġ" = 4 tokens


def test_bad_arguments(tiny_lm, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        PerplexityScorer(tiny_lm, batch_size=0)
    with pytest.raises(UserError, match="builtin:tiny-lm"):
        location("builtin:nope", models_dir=tmp_path)


def test_stage_drops_above_threshold(tmp_path: Path, tiny_lm, monkeypatch):
    monkeypatch.delenv("SYNTHVLM_BUILTIN_MODELS")  # the run keeps its own models: checked below
    pool = [c for c in CAPTIONS if c]
    (tmp_path / "pool.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "caption": c}) + "\n" for i, c in enumerate(pool))
    )
    values = PerplexityScorer(tiny_lm, batch_size=2).perplexities(pool)
    limit = float(np.median(values))
    config = RunConfig.model_validate(
        {
            "ingest": {"inputs": [str(tmp_path / "pool.jsonl")]},
            "curate": {
                "recipe": "none",
                "dedup": False,
                "perplexity": {"model": "builtin:tiny-lm", "max_perplexity": limit, "batch_size": 2},
            },
        }
    )
    run(tmp_path / "run", config, stages=["ingest", "curate"], progress=False)
    curate = tmp_path / "run" / "curate"
    kept = pq.read_table(curate / "data" / "part-00000.parquet").column("id").to_pylist()
    assert kept == [f"p{i}" for i, v in enumerate(values) if v <= limit]
    rows = pq.read_table(curate / "rejected" / "perplexity-00000.parquet").to_pylist()
    assert [r["id"] for r in rows] == [f"p{i}" for i, v in enumerate(values) if v > limit]
    np.testing.assert_allclose([r["value"] for r in rows], values[values > limit], rtol=1e-12)
    assert status(tmp_path / "run")["stages"]["curate"]["dropped"] == {"perplexity": len(rows)}
    assert (tmp_path / "run" / "models" / "tiny-lm" / "model.safetensors").is_file()


def test_kenlm_missing_names_the_extra(tmp_path):
    try:
        import kenlm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install 'synthvlm\[kenlm\]'"):
            KenlmScorer(str(tmp_path / "en.arpa.bin"), tokenizer=str(tmp_path / "en.sp.model")).perplexities(
                ["a dog"]
            )
    else:
        pytest.skip("kenlm is installed")
