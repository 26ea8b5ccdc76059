"""Test configuration: offline hub, the tiers (fault, slow, gpu), the shared real-data folder, and the demo
runs every test that only reads a finished run shares."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
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
DEMO = REPO / "configs" / "demo.yaml"
DEMO_QUALITY = REPO / "configs" / "demo-quality.yaml"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-fault", action="store_true", help="also run the fault tier (what `make test-all` runs)"
    )
    parser.addoption("--run-slow", action="store_true", help="run tests that need real hub weights")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SHARED_MODELS, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    skip_fault = pytest.mark.skip(reason="fault tier: pass --run-fault (make test-all)")
    skip_slow = pytest.mark.skip(reason="needs real weights; pass --run-slow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "fault" in item.keywords and not config.getoption("--run-fault"):
            item.add_marker(skip_fault)
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


@dataclass(frozen=True)
class Demo:
    """`synthvlm demo --out OUT`, run once as the README runs it: a real process."""

    out: Path
    result: subprocess.CompletedProcess[str]

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def export(self) -> Path:
        return self.out / "export"


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The offline demo, once per session. Tests only read it; one that changes a run takes `demo_copy`."""
    from tests.pipeline.helpers import cli_process

    out = tmp_path_factory.mktemp("demo") / "D"
    result = cli_process("demo", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    return Demo(out, result)


def copy_demo(demo: Demo, out: Path) -> Path:
    """A copy of the demo folder at `out` that is a run of its own: the absolute paths its records and
    config hold (the export folder beside the run) are rewritten to the copy's."""
    shutil.copytree(demo.out, out)
    for path in (out / "run").rglob("*"):
        if path.suffix in (".json", ".yaml") and path.is_file():
            text = path.read_text(encoding="utf-8")
            if str(demo.out) in text:
                path.write_text(text.replace(str(demo.out), str(out)), encoding="utf-8")
    return out


@pytest.fixture
def demo_copy(demo: Demo, tmp_path: Path) -> Path:
    """A private copy of the demo folder (`D` with `run/` and `export/`) for a test that changes it."""
    return copy_demo(demo, tmp_path / "D")


@pytest.fixture(scope="session")
def recipe_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/demo.yaml run in this process into a fresh run directory (exports in RUN/export): the
    reference other executors and storages must reproduce byte for byte. Read only."""
    from synthvlm import pipeline
    from synthvlm.config import load_config

    run = tmp_path_factory.mktemp("recipe") / "run"
    pipeline.run(run, load_config(DEMO), progress=False)
    return run


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small mixed-pool recipe (`helpers.mixed_recipe`) run once in this process. Read only."""
    from synthvlm import pipeline
    from synthvlm.config import load_config
    from tests.pipeline.helpers import mixed_recipe

    folder = tmp_path_factory.mktemp("mixed")
    pipeline.run(folder / "run", load_config(mixed_recipe(folder)), progress=False)
    return folder / "run"


@pytest.fixture(scope="session")
def quality_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/demo-quality.yaml (every pair scorer, balanced selection) run once in this process. Read
    only."""
    from synthvlm import pipeline
    from synthvlm.config import load_config

    run = tmp_path_factory.mktemp("quality") / "run"
    pipeline.run(run, load_config(DEMO_QUALITY), progress=False)
    return run
