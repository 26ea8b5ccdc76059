"""The model registry: one resolution rule, one error text, one worker cache rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthvlm.core.errors import UserError
from synthvlm.models import registry


def test_hub_ids_and_folders_resolve_without_building(tmp_path: Path):
    assert registry.resolve("openai/clip-vit-base-patch32", models_dir=tmp_path) == registry.Source(
        "openai/clip-vit-base-patch32", "openai/clip-vit-base-patch32", False
    )
    assert registry.resolve(str(tmp_path), models_dir=tmp_path / "m").local
    assert not (tmp_path / "m").exists()


def test_unknown_builtin_lists_every_valid_name(tmp_path: Path):
    with pytest.raises(UserError) as info:
        registry.resolve("builtin:tiny-nope", models_dir=tmp_path)
    assert str(info.value) == (
        "unknown builtin model 'builtin:tiny-nope'; valid: builtin:tiny-aesthetic, "
        "builtin:tiny-blip-caption, builtin:tiny-blip-itm, builtin:tiny-clip, builtin:tiny-flux1, "
        "builtin:tiny-flux2-klein, "
        "builtin:tiny-llava, builtin:tiny-llava-hf, builtin:tiny-lm, builtin:tiny-pixart-sigma, "
        "builtin:tiny-qwen-image, builtin:tiny-safety-checker, builtin:tiny-sana, builtin:tiny-sana-sprint, "
        "builtin:tiny-sd3, builtin:tiny-sdxl, builtin:tiny-sdxl-refiner, builtin:tiny-siglip, "
        "builtin:tiny-z-image"
    )


def test_builtin_builds_into_the_run_or_the_shared_folder(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(registry.SHARED_BUILTIN_ENV, raising=False)
    own = registry.resolve("builtin:tiny-clip", models_dir=tmp_path / "run" / "models")
    assert own == registry.Source("builtin:tiny-clip", str(tmp_path / "run" / "models" / "tiny-clip"), True)
    monkeypatch.setenv(registry.SHARED_BUILTIN_ENV, str(tmp_path / "shared"))
    shared = registry.resolve("builtin:tiny-clip", models_dir=tmp_path / "other" / "models")
    assert shared.location == str(tmp_path / "shared" / "tiny-clip")
    files = sorted(p.name for p in Path(shared.location).iterdir())
    assert files == sorted(p.name for p in Path(own.location).iterdir())
    for name in files:  # deterministic builds: the same bytes wherever they are built
        assert (Path(shared.location) / name).read_bytes() == (Path(own.location) / name).read_bytes()


def test_cache_holds_one_value_per_role():
    registry.clear_cache()
    built: list[str] = []

    def build(name: str):
        built.append(name)
        return name

    assert registry.cached("score", "a", lambda: build("a")) == "a"
    assert registry.cached("score", "a", lambda: build("a2")) == "a"  # same key: no rebuild
    assert registry.cached("generate", "g", lambda: build("g")) == "g"  # another role is kept apart
    assert registry.cached("score", "b", lambda: build("b")) == "b"  # a new key replaces the old
    assert registry.cached("score", "a", lambda: build("a3")) == "a3"
    assert registry.cached("generate", "g", lambda: build("g2")) == "g"
    assert built == ["a", "g", "b", "a3"]
    registry.clear_cache()
