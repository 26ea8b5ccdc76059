"""Config validation: values the pipeline cannot run are refused up front, in one line."""

from __future__ import annotations

import pytest

from synthvlm.config import parse_config
from synthvlm.core.errors import UserError


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"generate": {"width": 7}}, "generate.width: Input should be a multiple of 8"),
        ({"generate": {"preset": "tiny", "height": 60}}, "generate.height: Input should be a multiple of 8"),
        (
            {"export": {"formats": []}},
            "export.formats: List should have at least 1 item after validation, not 0",
        ),
        (
            {"export": {"formats": ["parquet", "parquet"]}},
            "export: Value error, export.formats names a format twice: ['parquet', 'parquet']",
        ),
    ],
)
def test_unrunnable_values_are_refused(data, message):
    with pytest.raises(UserError) as info:
        parse_config(data, origin="recipe.yaml")
    assert str(info.value) == f"recipe.yaml: invalid config: {message}"


def test_resolution_multiple_of_8_is_accepted():
    config = parse_config({"generate": {"preset": "tiny", "width": 72, "height": 1024}}, origin="r")
    assert (config.generate.width, config.generate.height) == (72, 1024)


def test_every_field_is_documented():
    from synthvlm.config import RunConfig

    schema = RunConfig.model_json_schema()
    undocumented = [
        f"{model}.{name}"
        for model, spec in [*schema["$defs"].items(), ("RunConfig", schema)]
        for name, prop in spec.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undocumented == []
    assert len(schema["$defs"]) == 14
