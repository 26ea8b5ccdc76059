"""Test configuration: offline hub, slow/gpu tiers skipped by default, the shared real-data folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Tiny `builtin:` models are built once per test session and shared by every run (CLI subprocesses
# inherit it); their files hash the same wherever they are built, so outputs do not change.
_SHARED_MODELS = tempfile.mkdtemp(prefix="synthvlm-test-models-")
os.environ["SYNTHVLM_BUILTIN_MODELS"] = _SHARED_MODELS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run tests that need real hub weights")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SHARED_MODELS, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    skip_slow = pytest.mark.skip(reason="needs real weights; pass --run-slow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def shared_data() -> Path:
    """The real data folder beside the checkout; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
