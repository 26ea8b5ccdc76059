"""The offline demo's config: the bundled recipe, with its run and exports placed under one folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from synthvlm.config import RunConfig, load_config


def demo_config(out: Path) -> RunConfig:
    """configs/demo.yaml (shipped in the package), exporting to `out/export`."""
    with resources.as_file(resources.files("synthvlm").joinpath("data/demo.yaml")) as path:
        config = load_config(path)
    return config.updated("export", out=str((out / "export").resolve()))
