"""Original-pair alignment with tiny CLIP and BLIP ITM: values equal direct scoring; bad images recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthvlm.config import AlignmentConfig, RunConfig
from synthvlm.models.registry import location
from synthvlm.pipeline import run, status
from synthvlm.score.clip import ClipScorer
from synthvlm.steps.alignment import ItmScorer, load_image


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("run") / "models"
    return (
        root,
        location("builtin:tiny-clip", models_dir=root),
        location("builtin:tiny-blip-itm", models_dir=root),
    )


def _images(folder: Path) -> list[str]:
    rng = np.random.default_rng(0)
    names = []
    for i in range(6):
        name = f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (24 + i, 40, 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return names


def test_load_image_reasons(tmp_path):
    _images(tmp_path)
    assert load_image("img0.png", root=str(tmp_path)).size == (40, 24)
    assert load_image("nope.png", root=str(tmp_path)) == ("missing_image", str(tmp_path / "nope.png"))
    assert load_image(str(tmp_path / "broken.jpg"), root=None) == (
        "unreadable_image",
        str(tmp_path / "broken.jpg"),
    )


def _run_pool(tmp_path: Path, rows: list[dict], alignment: dict) -> Path:
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = RunConfig.model_validate(
        {
            "ingest": {"inputs": [str(tmp_path / "pool.jsonl")]},
            "curate": {"recipe": "none", "dedup": False, "alignment": alignment},
        }
    )
    run(tmp_path / "run", config, stages=["ingest", "curate"], progress=False)
    return tmp_path / "run" / "curate"


def test_stage_thresholds_and_reasons(tmp_path, models):
    folder = tmp_path / "images"
    folder.mkdir()
    names = _images(folder)
    captions = ["a dog on the street", "a red cat", "the man", "a woman in red", "photo of a cat", "a dog"]
    images = [Image.open(folder / n).convert("RGB") for n in names]
    _, clip_dir, itm_dir = models
    cos = ClipScorer(clip_dir, prefix="", batch_size=1).cosines(images, captions)
    clip_min = float(np.sort(cos)[1])  # the lowest cosine fails CLIP
    survivors = [i for i in range(6) if cos[i] >= clip_min]
    itm = ItmScorer(itm_dir, batch_size=1).scores(
        [images[i] for i in survivors], [captions[i] for i in survivors]
    )
    itm_min = float(np.sort(itm)[1])  # the lowest ITM among CLIP's survivors fails ITM
    rows = [
        {"id": f"p{i}", "caption": c, "image": n}
        for i, (c, n) in enumerate(zip(captions, names, strict=True))
    ]
    rows += [
        {"id": "nofile", "caption": "a cat", "image": "gone.png"},
        {"id": "broken", "caption": "a cat", "image": "broken.jpg"},
        {"id": "text-only", "caption": "a caption without an image"},
    ]
    curate = _run_pool(
        tmp_path,
        rows,
        {
            "clip_model": "builtin:tiny-clip",
            "min_clip": clip_min,
            "itm_model": "builtin:tiny-blip-itm",
            "min_itm": itm_min,
            "image_root": str(folder),
            "batch_size": 4,
        },
    )
    rejected = pq.read_table(curate / "rejected" / "alignment-00000.parquet").to_pylist()
    clip_fail = [i for i in range(6) if cos[i] < clip_min]
    itm_fail = [survivors[j] for j in range(len(survivors)) if itm[j] < itm_min]
    assert len(clip_fail) == 1 and len(itm_fail) == 1
    by_id = {r["id"]: r for r in rejected}
    assert set(by_id) == {f"p{clip_fail[0]}", f"p{itm_fail[0]}", "nofile", "broken"}
    assert by_id[f"p{clip_fail[0]}"]["reason"] == "clip_alignment"
    assert by_id[f"p{clip_fail[0]}"]["value"] == pytest.approx(cos[clip_fail[0]], abs=1e-6)
    assert by_id[f"p{itm_fail[0]}"]["reason"] == "itm_alignment"
    assert by_id[f"p{itm_fail[0]}"]["value"] == pytest.approx(itm[survivors.index(itm_fail[0])], abs=1e-6)
    assert (by_id["nofile"]["reason"], by_id["nofile"]["detail"]) == (
        "missing_image",
        str(folder / "gone.png"),
    )
    assert by_id["broken"]["reason"] == "unreadable_image"
    kept = pq.read_table(curate / "data" / "part-00000.parquet").column("id").to_pylist()
    assert kept == [f"p{i}" for i in range(6) if i not in (clip_fail[0], itm_fail[0])] + ["text-only"]
    funnel = status(tmp_path / "run")["stages"]["curate"]
    assert funnel["in"] == 9 and funnel["kept"] == 5 and sum(funnel["dropped"].values()) == 4


def test_coco_mini_photos(tmp_path, models, shared_data):
    coco = shared_data / "coco-mini"
    annotations = json.loads((coco / "captions_val2017.json").read_text())
    files = {im["id"]: im["file_name"] for im in annotations["images"]}
    rows = [
        {"id": f"a{a['id']}", "caption": a["caption"], "image": files[a["image_id"]]}
        for a in annotations["annotations"][:12]
    ]
    curate = _run_pool(
        tmp_path,
        rows,
        {
            "clip_model": "builtin:tiny-clip",
            "min_clip": -1.0,
            "itm_model": None,
            "image_root": str(coco / "val2017"),
            "batch_size": 4,
        },
    )
    present = [r for r in rows if (coco / "val2017" / r["image"]).is_file()]
    kept = pq.read_table(curate / "data" / "part-00000.parquet").column("id").to_pylist()
    assert kept == [r["id"] for r in present]  # every real photo decodes; a cosine is never below -1
    rejected = pq.read_table(curate / "rejected" / "alignment-00000.parquet").to_pylist()
    assert {r["reason"] for r in rejected} <= {"missing_image"} and len(rejected) == len(rows) - len(present)


def test_config_defaults_are_the_papers():
    cfg = AlignmentConfig()
    assert (cfg.clip_model, cfg.min_clip) == ("openai/clip-vit-base-patch32", 0.28)
    assert (cfg.itm_model, cfg.min_itm) == ("Salesforce/blip-itm-base-coco", 0.8)
