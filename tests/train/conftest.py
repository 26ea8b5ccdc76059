"""One tiny synthvlm export and one tiny LLaVA, built once per test session for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECORDS = 8


@pytest.fixture(scope="session")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo recipe cut to 8 captions x 1 candidate, exported in all three layouts, 5 rows per shard."""
    from synthvlm import pipeline
    from synthvlm.config import load_config

    root = tmp_path_factory.mktemp("train-export")
    captions = (
        (REPO / "src" / "synthvlm" / "data" / "demo_captions.jsonl").read_text(encoding="utf-8").splitlines()
    )
    (root / "captions.jsonl").write_text("\n".join(captions[:RECORDS]) + "\n", encoding="utf-8")
    config = (
        load_config(REPO / "configs" / "demo.yaml")
        .updated("ingest", inputs=[str(root / "captions.jsonl")])
        .updated("generate", candidates_per_caption=1)
        .updated("select", top_k=RECORDS)
        .updated("export", out=str(root / "export"), rows_per_shard=5)
    )
    funnel = pipeline.run(root / "run", config, progress=False)
    assert funnel["export"]["kept"] == RECORDS
    return root / "export"


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from synthvlm.models.builtin.llava import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava")
