"""The curate step contract: each step's `decide` (and `plan`) on small in-memory tables, no run directory."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from synthvlm.config import (
    AlignmentConfig,
    CurateConfig,
    DecontamConfig,
    JudgeConfig,
    NearDupConfig,
    PerplexityConfig,
    RunConfig,
)
from synthvlm.core import schema
from synthvlm.core.errors import UserError
from synthvlm.stages.curate import CurateStage
from synthvlm.steps import STEPS
from synthvlm.steps.alignment import AlignmentStep
from synthvlm.steps.base import Decision, Drop
from synthvlm.steps.decontam import DecontamStep
from synthvlm.steps.dedup import DedupStep, text_hashes
from synthvlm.steps.judge import JudgeStep, ResponseCache, load_template, template_hash
from synthvlm.steps.neardup import NearDupStep
from synthvlm.steps.perplexity import PerplexityStep
from synthvlm.steps.rules import RuleFilterStep, filter_specs


def _captions(captions: list[str], *, first: int = 0, image_ref: list[str | None] | None = None) -> pa.Table:
    """A shard of the CAPTION schema: ids c<first>, c<first+1>, ..."""
    n = len(captions)
    return pa.table(
        {
            "id": [f"c{first + i}" for i in range(n)],
            "caption": captions,
            "source_file": ["pool.txt"] * n,
            "source_index": list(range(first + 1, first + n + 1)),
            "source_id": [None] * n,
            "image_ref": image_ref or [None] * n,
        },
        schema=schema.CAPTION,
    )


def test_registry_is_the_recipe_order_with_its_folders():
    assert {name: cls.folder for name, cls in STEPS.items()} == {
        "filter": "filtered",
        "perplexity": "perplexity",
        "alignment": "aligned",
        "dedup": "deduped",
        "neardup": "neardup",
        "decontam": "decontam",
        "judge": "judged",
    }
    assert [name for name, cls in STEPS.items() if cls.plan_columns] == ["dedup", "neardup"]


def test_rule_filters_first_drop_wins_and_hashes_for_dedup():
    specs = [
        {"name": "words_num_filter", "params": {"min_num": 2}},
        {"name": "alphanumeric_filter", "params": {"min_ratio": 0.6}},
    ]
    step = RuleFilterStep(specs=specs, hash_text=True)
    table = _captions(["a dog runs", "dog", "!!!! ab cd", "?"])
    decision = step.decide(table)
    # "?" has no words and no letters: words_num_filter, first in the list, is the one reported.
    assert decision == Decision(
        [True, False, False, False],
        [
            Drop(1, "words_num_filter", value=1.0),
            Drop(2, "alphanumeric_filter", value=0.4),
            Drop(3, "words_num_filter", value=0.0),
        ],
    )
    kept = step.finish(table.slice(0, 1))
    assert kept.schema == schema.FILTERED
    assert kept.column("text_hash").to_pylist() == text_hashes(["a dog runs"]).tolist()
    assert step.settings() == {"filters": specs, "dedup": True}
    assert RuleFilterStep(specs=specs).finish(table) is table


def test_rule_filter_specs_and_errors_are_sentences():
    assert filter_specs(CurateConfig(recipe="none")) == []
    assert [s["name"] for s in filter_specs(CurateConfig())][:2] == [
        "alphanumeric_filter",
        "character_repetition_filter",
    ]
    with pytest.raises(UserError, match="unknown curation recipe 'nope'; valid: none, synthvlm"):
        filter_specs(CurateConfig(recipe="nope"))
    with pytest.raises(UserError, match="curate: unknown filter 'nope'"):
        RuleFilterStep(specs=[{"name": "nope", "params": {}}]).decide(_captions(["a"]))


def test_dedup_plans_across_shards_then_decides_per_shard():
    step = DedupStep()
    shards = [_captions(["A dog.", "a cat"]), _captions(["a dog", "A CAT!", "a bird"], first=2)]
    hashed = [s.append_column("text_hash", pa.array(text_hashes(s["caption"].to_pylist()))) for s in shards]
    plans = step.plan([t.select(list(step.plan_columns)) for t in hashed])
    assert [p.schema for p in plans] == [schema.DEDUP_PLAN] * 2
    assert [p.to_pydict() for p in plans] == [
        {"keep": [True, True], "dup_of": [None, None]},
        {"keep": [False, False, True], "dup_of": ["c0", "c1", None]},
    ]
    assert step.decide(hashed[1], plans[1]) == Decision(
        [False, False, True],
        [
            Drop(0, "duplicate_text", detail="duplicate of c0"),
            Drop(1, "duplicate_text", detail="duplicate of c1"),
        ],
    )
    assert step.finish(hashed[1]).schema == schema.CAPTION
    assert step.plan([]) == []


def test_neardup_plan_and_jaccard_value():
    step = NearDupStep(config=NearDupConfig(threshold=0.5))
    shards = [
        _captions(["a dog runs in the park", "a red car parked on a quiet street"]),
        _captions(["a dog runs in the park today"], first=2),
    ]
    plans = step.plan([s.select(list(step.plan_columns)) for s in shards])
    assert [p.to_pydict() for p in plans] == [
        {"keep": [True, True], "dup_of": [None, None], "dup_of_caption": [None, None]},
        {"keep": [False], "dup_of": ["c0"], "dup_of_caption": ["a dog runs in the park"]},
    ]
    # 4 word 3-grams shared of the 5 in the union
    assert step.decide(shards[1], plans[1]) == Decision(
        [False], [Drop(0, "near_duplicate", value=0.8, detail="cluster c0")]
    )
    assert step.settings() == {
        "near_dup": {"shingle": "word", "shingle_size": 3, "num_perm": 128, "threshold": 0.5, "seed": 1}
    }


def test_decontam_drops_at_the_threshold_with_the_eval_item(tmp_path: Path):
    evals = tmp_path / "eval.txt"
    evals.write_text("a child flies a red kite in a green park\n")
    step = DecontamStep(config=DecontamConfig(eval_files=[str(evals)], ngram=3, threshold=0.5))
    # 4 of 7 three-grams (a child flies, child flies a, flies a red, a red kite) are in the eval caption.
    table = _captions(["a child flies a red kite over the sea", "two horses graze"])
    assert step.decide(table) == Decision(
        [False, True],
        [Drop(0, "contaminated", value=4 / 7, detail=f"{evals}:1: a child flies a red kite in a green park")],
    )
    sha = step.settings()["decontamination"]["sha256"]
    assert list(sha) == [str(evals)] and len(sha[str(evals)]) == 64


def test_alignment_without_models_checks_the_images(tmp_path: Path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    step = AlignmentStep(
        config=AlignmentConfig(clip_model=None, itm_model=None, image_root=str(tmp_path)),
        models_dir=tmp_path / "models",
    )
    table = _captions(["w", "x", "y", "z"], image_ref=[None, "gone.png", "bad.png", "ok.png"])
    assert step.decide(table) == Decision(
        [True, False, False, True],
        [
            Drop(1, "missing_image", detail=str(tmp_path / "gone.png")),
            Drop(2, "unreadable_image", detail=str(tmp_path / "bad.png")),
        ],
    )


def test_judge_reads_cached_answers_strictly(tmp_path: Path):
    config = JudgeConfig(model="m", api_key_env="SYNTHVLM_TEST_NO_KEY")
    step = JudgeStep(config=config, models_dir=tmp_path / "models", cache=tmp_path / "judge.sqlite")
    digest = template_hash(load_template(None))
    cache = ResponseCache(step.cache)
    for caption, answer in (("a dog", "Yes."), ("a cat", "no"), ("a bird", "maybe so")):
        cache.put(ResponseCache.key("openai:m", digest, caption), answer)
    cache.close()
    # Every answer is cached, so the endpoint (and its key) is never needed.
    assert step.decide(_captions(["a dog", "a cat", "a bird"])) == Decision(
        [True, False, False],
        [Drop(1, "judge_no", detail="no"), Drop(2, "judge_unparseable", detail="maybe so")],
    )
    assert step.settings()["judge"]["template_sha256"] == digest
    assert "api_key_env" not in step.settings()["judge"]


def test_perplexity_kenlm_needs_a_tokenizer(tmp_path: Path):
    config = PerplexityConfig(backend="kenlm", model="wiki.arpa", max_perplexity=5500, device="cuda")
    step = PerplexityStep(config=config, models_dir=tmp_path)
    assert "device" not in step.settings()["perplexity"]
    with pytest.raises(UserError, match="kenlm backend needs `tokenizer`"):
        step.decide(_captions(["a dog"]))


def test_stage_sequences_the_configured_steps(tmp_path: Path):
    evals = tmp_path / "eval.txt"
    evals.write_text("a caption\n")
    config = RunConfig.model_validate(
        {
            "curate": {
                "perplexity": {"model": "builtin:tiny-lm", "max_perplexity": 100},
                "alignment": {},
                "near_dup": {},
                "decontamination": {"eval_files": [str(evals)]},
                "judge": {"model": "m"},
            }
        }
    )
    stage = CurateStage(tmp_path / "run", config)
    assert stage.phases() == [
        "filter",
        "perplexity",
        "alignment",
        "dedup-plan",
        "dedup",
        "neardup-plan",
        "neardup",
        "decontam",
        "judge",
    ]
    assert list(stage.settings()) == [
        "filters",
        "dedup",
        "perplexity",
        "alignment",
        "near_dup",
        "decontamination",
        "judge",
    ]
    bare_config = RunConfig.model_validate({"curate": {"recipe": "none", "dedup": False}})
    bare = CurateStage(tmp_path / "run", bare_config)
    assert bare.phases() == ["filter"]
    assert bare.settings() == {"filters": [], "dedup": False}
