"""configs/demo-generators.yaml: every family's tiny pipeline in one pool, the whole pipeline offline."""

from __future__ import annotations

import json

import pytest

from synthvlm import pipeline
from synthvlm.config import load_config
from synthvlm.generate.families import FAMILIES
from tests.conftest import REPO
from tests.pipeline.helpers import cli

RECIPE = REPO / "configs" / "demo-generators.yaml"


@pytest.mark.fault  # a minute of generation on two cores: make test-all
def test_every_family_makes_its_share_and_status_counts_them(tmp_path):
    config = load_config(RECIPE)
    assert {g.family.name for g in config.generate.pool()} == set(FAMILIES)
    run = tmp_path / "run"
    funnels = pipeline.run(run, config, progress=False)
    report = json.loads(cli("status", str(run), "--json").stdout)
    generators = report["generators"]
    assert list(generators) == [g.label for g in config.generate.pool()]
    assert all(g["candidates"] > 0 and g["failed"] == 0 for g in generators.values())
    assert sum(g["candidates"] for g in generators.values()) == funnels["generate"]["in"] == 3 * 43
    assert sum(g["selected"] for g in generators.values()) == funnels["export"]["kept"] == 24
