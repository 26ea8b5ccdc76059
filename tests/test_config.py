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
            "export: export.formats names a format twice: ['parquet', 'parquet']",
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


def test_validators_never_mutate_and_updated_works_for_every_section():
    from synthvlm.config import RunConfig

    config = RunConfig()
    assert config.select.top_k is None and config.generate.steps is None  # as given: nothing filled in
    assert config.resolved().select.top_k == 100_000 and config.resolved().generate.steps == 60
    assert config.updated("select", fraction=0.5).resolved().select.top_k is None
    for section, field, value in [
        ("ingest", "shard_rows", 7),
        ("curate", "recipe", "none"),
        ("generate", "steps", 3),
        ("score", "ssim_weight", 0.25),
        ("select", "threshold", 0.3),
        ("export", "rows_per_shard", 5),
        ("ray", "actors", 3),
        ("caption", "batch_size", 2),
    ]:
        assert getattr(getattr(config.updated(section, **{field: value}), section), field) == value


def test_an_explicit_field_beats_the_preset_and_survives_a_preset_switch():
    config = parse_config({"generate": {"preset": "sdxl", "width": 512, "steps": 8}}, origin="r")
    resolved = config.resolved().generate
    assert (resolved.width, resolved.height, resolved.steps, resolved.guidance) == (512, 1024, 8, 20.0)
    tiny = config.updated("generate", preset="tiny").resolved().generate
    assert (tiny.model, tiny.width, tiny.height, tiny.steps, tiny.guidance) == (
        "builtin:tiny-sdxl",
        512,
        64,
        8,
        5.0,
    )


def test_every_path_field_resolves_relative_to_the_recipe(tmp_path):
    import yaml

    from synthvlm.config import load_config

    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.parent.mkdir()
    recipe.write_text(
        yaml.safe_dump(
            {
                "ingest": {"inputs": ["caps/*.jsonl", "/abs/x.json"]},
                "caption": {"inputs": ["imgs"]},
                "curate": {
                    "decontamination": {"eval_files": ["eval/coco.json"]},
                    "judge": {"model": "m", "template": "prompt.txt"},
                    "alignment": {"image_root": "images"},
                },
                "export": {"out": "s3://bucket/out"},
            }
        )
    )
    config = load_config(recipe)
    base = recipe.parent
    assert config.ingest.inputs == [str(base / "caps/*.jsonl"), "/abs/x.json"]
    assert config.caption.inputs == [str(base / "imgs")]
    assert config.curate.decontamination.eval_files == [str(base / "eval/coco.json")]
    assert config.curate.judge.template == str(base / "prompt.txt")
    assert config.curate.alignment.image_root == str(base / "images")
    assert config.export.out == "s3://bucket/out"  # URLs are left alone


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "generate:\n  preset: tiny\n steps: [2\n",
            "not valid YAML at line 3, column 2: expected <block end>, but found '<block mapping start>' "
            "(while parsing a block mapping that starts at line 1, column 1)",
        ),
        (
            "generate:\n  preset: tiny\n  steps: 2: 3\n",
            "not valid YAML at line 3, column 11: mapping values are not allowed here",
        ),
        (
            "ingest: {inputs: [a.txt\n",
            "not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence that starts at line 1, column 18)",
        ),
    ],
)
def test_yaml_errors_give_pyyamls_line_and_column(tmp_path, text, message):
    from synthvlm.config import load_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(recipe)
    assert str(info.value) == f"{recipe}: {message}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"generate": {"presett": "tiny"}}, "generate.presett: unknown key; did you mean generate.preset?"),
        ({"genrate": {"preset": "tiny"}}, "genrate: unknown key; did you mean generate?"),
        ({"ray": {"adress": "auto"}}, "ray.adress: unknown key; did you mean ray.address?"),
        (
            {"curate": {"filters": [{"name": "x", "parms": {}}]}},
            "curate.filters.0.parms: unknown key; did you mean curate.filters.0.params?",
        ),
        (
            {"select": {"zzz": 1}},
            "select.zzz: unknown key; valid keys here: "
            "balanced, best_of_n, fraction, key, strategy, threshold, top_k",
        ),
    ],
)
def test_unknown_keys_suggest_the_closest_valid_one(data, message):
    with pytest.raises(UserError) as info:
        parse_config(data, origin="recipe.yaml")
    assert str(info.value) == f"recipe.yaml: invalid config: {message}"
