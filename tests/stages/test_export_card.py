"""Dataset cards and the hf format: `datasets.load_dataset(folder)` reads every export folder through its
README.md, the hf folder is a hub repository as it is, validate checks the card, reruns give equal bytes."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from tests.conftest import Demo
from tests.pipeline.helpers import cli

from synthvlm import card, pipeline
from synthvlm.core import schema
from synthvlm.validate import validate_export

DEMO_HEADER = """\
---
# license: replace `other` with the license you publish this dataset under; it must respect the
# licenses of the generator model and of the caption source (for a custom one add license_name and
# license_link).
license: other
task_categories:
- image-to-text
- text-to-image
size_categories:
- n<1K
tags:
- synthetic
- synthvlm
configs:
- config_name: default
  data_files:
  - split: train
    path: part-*.parquet
dataset_info:
  features:
  - name: key
    dtype: string
  - name: caption
    dtype: string
  - name: image
    dtype: image
  - name: caption_id
    dtype: string
  - name: candidate_index
    dtype: int32
  - name: clip
    dtype: float64
  - name: ssim
    dtype: float64
  - name: weighted
    dtype: float64
  - name: rank
    dtype: int64
  - name: generator
    dtype: string
  - name: model_id
    dtype: string
  - name: model_revision
    dtype: string
  - name: seed
    dtype: int64
---
"""


@pytest.fixture(scope="module")
def demo_out(demo: Demo) -> Path:
    return demo.out


@pytest.fixture(scope="module")
def selection(demo_out: Path) -> list[dict]:
    return pq.read_table(demo_out / "run" / "select" / "data").to_pylist()


def _export_hf(run: Path, out: Path) -> None:
    args = ["export", "--run", str(run), "--format", "parquet", "--format", "hf", "--out", str(out)]
    result = cli(*args, "--from", "export", "-q")
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def hf_run(demo_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo run exported again as parquet + hf into RUN/../export."""
    run = tmp_path_factory.mktemp("card-hf") / "run"
    shutil.copytree(demo_out / "run", run)
    shutil.rmtree(run / "export")  # its external-outputs record names the demo's folders: --from deletes them
    _export_hf(run, run.parent / "export")
    return run


def _header(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    end = text.index("\n---\n", 4) + len("\n---\n")
    return text[:end]


def test_demo_card_header_is_exact(demo_out):
    export = demo_out / "export"
    assert _header(export / "parquet" / "README.md") == DEMO_HEADER
    for fmt, path in (("llava", "synthvlm_pretrain.json"), ("webdataset", "shard-*.tar")):
        meta = yaml.safe_load(_header(export / fmt / "README.md").strip("-\n"))
        data_files = [{"split": "train", "path": path}]
        assert meta["configs"] == [{"config_name": "default", "data_files": data_files}]
        assert "dataset_info" not in meta  # `datasets` infers these formats' features itself
        assert meta["license"] == "other" and meta["size_categories"] == ["n<1K"]


def test_card_features_are_what_datasets_writes():
    import datasets

    for scorers in ([], ["siglip", "pickscore", "vqascore", "nsfw", "aesthetic"]):
        features = datasets.Features.from_dict(schema.export_parquet_features(scorers))
        assert card.features_yaml(scorers) == features._to_yaml_list()


def test_card_body_holds_the_funnel_scores_and_models(demo_out, selection):
    text = (demo_out / "export" / "parquet" / "README.md").read_text(encoding="utf-8")
    for name, f in pipeline.status(demo_out / "run")["stages"].items():
        dropped = ", ".join(f"{reason} {n}" for reason, n in f["dropped"].items())
        assert f"| {name} | {f['in']} | {f['kept']} | {dropped} |\n" in text
    assert "| select | 86 | 24 | not_best_of_n 43, not_selected 19 |\n" in text
    for key in ("clip", "ssim", "weighted"):
        values = [r[key] for r in selection]
        mean = math.fsum(values) / len(values)
        assert f"| {key} | {mean:.4f} | {min(values):.4f} | {max(values):.4f} |\n" in text
    generate = pq.read_table(demo_out / "run" / "generate" / "data").to_pylist()[0]
    assert (
        "- Generator `tiny` (preset tiny, licence apache-2.0, 24 of the images): `builtin:tiny-sdxl` at "
        f"revision `{generate['model_revision']}` (EulerDiscreteScheduler, 2 steps, guidance 5.0, 64x64, "
        "float32)\n"
    ) in text
    assert "## Licence of the generators" not in text  # every generator allows commercial use
    assert "- Scorer: CLIP `builtin:tiny-clip`, revision not pinned" in text
    recipe = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert recipe["ingest"]["inputs"] == ["demo_captions.jsonl"]  # names, not this machine's paths
    assert "out" not in recipe["export"] and recipe["select"]["top_k"] == 24
    assert str(demo_out) not in text


@pytest.mark.parametrize(
    ("records", "label"),
    [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (123_456, "100K<n<1M"), (10**12 - 1, "100B<n<1T")]
    + [(10**12, "n>1T")],
)
def test_size_category_uses_the_hub_buckets(records, label):
    assert card.size_category(records) == label


def test_hf_folder_loads_through_its_card(hf_run, selection, tmp_path):
    import datasets

    hf = hf_run.parent / "export" / "hf"
    names = sorted(p.relative_to(hf).as_posix() for p in hf.rglob("*") if p.is_file())
    shards = [f"data/train-{i:05d}-of-00003.parquet" for i in range(3)]
    assert names == ["README.md", *shards, "manifest.json"]
    parquet = hf_run.parent / "export" / "parquet"
    for i, shard in enumerate(shards):  # the parquet format's bytes under the hub's names
        assert (hf / shard).read_bytes() == (parquet / f"part-{i:05d}.parquet").read_bytes()
    ds = datasets.load_dataset(str(hf), split="train", cache_dir=str(tmp_path))
    assert ds.features == datasets.Features.from_dict(schema.export_parquet_features([]))
    assert ds["key"] == [r["key"] for r in selection]
    assert ds["caption"] == [r["caption"] for r in selection]
    assert ds["weighted"] == [r["weighted"] for r in selection]
    assert all(image.size == (64, 64) for image in ds["image"])


def test_every_format_folder_loads_through_its_card(demo_out, selection, tmp_path):
    import datasets

    export = demo_out / "export"
    keys = [r["key"] for r in selection]
    ds = datasets.load_dataset(str(export / "parquet"), split="train", cache_dir=str(tmp_path / "p"))
    assert ds["key"] == keys and ds[0]["image"].size == (64, 64)
    ds = datasets.load_dataset(str(export / "webdataset"), split="train", cache_dir=str(tmp_path / "w"))
    assert ds["__key__"] == keys and ds[0]["jpg"].size == (64, 64)
    assert ds["txt"] == [r["caption"] for r in selection]
    assert [j["rank"] for j in ds["json"]] == list(range(1, 25))
    ds = datasets.load_dataset(str(export / "llava"), split="train", cache_dir=str(tmp_path / "l"))
    assert ds["id"] == keys
    assert ds["image"] == [f"00000/{k}.jpg" for k in keys]  # paths in images/, as LLaVA reads them


def test_validate_checks_the_card(hf_run, tmp_path):
    export = hf_run.parent / "export"
    assert validate_export(export / "hf") == []
    result = cli("validate", str(export))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{export / 'hf'}: ok", f"{export / 'parquet'}: ok"]

    hf = tmp_path / "hf"
    shutil.copytree(export / "hf", hf)
    readme = hf / "README.md"
    text = readme.read_text(encoding="utf-8")
    readme.write_text(text.replace("data/train-*.parquet", "data/test-*.parquet"), encoding="utf-8")
    assert validate_export(hf) == [
        f"README.md: config 'default': data_files 'data/test-*.parquet' match no file of {hf}"
    ]
    readme.write_text(text.replace("configs:\n", "configs: [\n", 1), encoding="utf-8")
    [problem] = validate_export(hf)
    assert problem.startswith("README.md: the YAML header does not parse (")
    readme.unlink()
    [problem] = validate_export(hf)
    assert problem.startswith("README.md: cannot read (")


def test_rerun_writes_identical_cards(hf_run, demo_out, tmp_path):
    export = hf_run.parent / "export"
    before = {fmt: (export / fmt / "README.md").read_bytes() for fmt in ("parquet", "hf")}
    _export_hf(hf_run, export)
    assert {fmt: (export / fmt / "README.md").read_bytes() for fmt in ("parquet", "hf")} == before
    config = pipeline.load_run_config(hf_run).resolved()
    facts = card.run_facts(hf_run, config, records=24)
    assert card.render_card(facts, "hf").encode() == before["hf"]
    # The demo's cards and those of its recipe run into RUN/export are compared byte for byte in
    # tests/pipeline/test_end_to_end.py::test_recipe_file_regenerates_the_same_pixels.
