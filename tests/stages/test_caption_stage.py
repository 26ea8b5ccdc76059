"""The caption stage with a tiny local BLIP: counts, determinism, resume, bad images, tar/Parquet, ingest."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthvlm import pipeline
from synthvlm.cli.caption import caption_images
from synthvlm.core.driver import funnel
from synthvlm.core.errors import UserError
from synthvlm.steps.alignment import load_image

MODEL = "builtin:tiny-blip-caption"
COCO = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "coco-mini" / "val2017"


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24 + i, 20), (i * 30 % 256, 90, 200 - i)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One shared models folder, so the tiny model is built once for the module."""
    return tmp_path_factory.mktemp("models")


def _run(tmp: Path, models: Path, name: str) -> Path:
    run = tmp / name
    run.mkdir()
    (run / "models").symlink_to(models, target_is_directory=True)
    return run


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for i in range(5):
        (images / f"img{i}.png").write_bytes(_png(i))
    (images / "sub" / "deep.JPG").write_bytes(_png(7))
    (images / "broken.jpg").write_bytes(b"this is no jpeg")
    (images / "notes.txt").write_text("not an image")
    return images


def _table(run: Path, folder: str = "data") -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((run / "caption" / folder).glob("*.parquet")))


def test_folder_counts_rejects_and_resume(tmp_path: Path, folder: Path, models: Path) -> None:
    run = _run(tmp_path, models, "run")
    f = caption_images(run, [str(folder)], model=MODEL, batch_size=4, max_new_tokens=6, progress=False)
    assert (f["in"], f["kept"], f["dropped"]) == (7, 6, {"unreadable_image": 1})
    table = _table(run)
    assert table.column("id").to_pylist() == ["img0", "img1", "img2", "img3", "img4", "sub/deep"]
    assert table.column("image").to_pylist()[0] == str((folder / "img0.png").resolve())
    assert all(isinstance(c, str) and c for c in table.column("caption").to_pylist())
    rejected = _table(run, "rejected").to_pylist()
    assert [(r["id"], r["reason"], r["stage"], r["source_index"]) for r in rejected] == [
        ("broken", "unreadable_image", "caption", 0)
    ]
    assert rejected[0]["detail"] == str((folder / "broken.jpg").resolve())
    config = pipeline.load_run_config(run)
    # ingest reads the caption stage's shards without them being listed among its inputs
    assert (config.caption.inputs, config.ingest.inputs) == ([str(folder)], [])
    # a finished run re-run does no work and leaves every byte in place
    before = {p: p.stat().st_mtime_ns for p in (run / "caption").rglob("*.parquet")}
    again = caption_images(run, [str(folder)], model=MODEL, batch_size=4, max_new_tokens=6, progress=False)
    assert again == f
    assert {p: p.stat().st_mtime_ns for p in (run / "caption").rglob("*.parquet")} == before
    assert pipeline.load_run_config(run) == config


def test_deterministic_and_resumes_a_killed_shard(tmp_path: Path, folder: Path, models: Path) -> None:
    a, b = _run(tmp_path, models, "a"), _run(tmp_path, models, "b")
    caption_images(a, [str(folder)], model=MODEL, batch_size=4, max_new_tokens=6, progress=False)
    caption_images(b, [str(folder)], model=MODEL, batch_size=4, max_new_tokens=6, progress=False)
    files = sorted(p.relative_to(a) for p in (a / "caption").rglob("*.parquet"))
    assert files
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in files)
    # lose a task's completion record (a kill before commit): only that task reruns, to the same bytes
    (b / "caption" / "done" / "caption-00000.json").unlink()
    (b / "caption" / "complete.json").unlink()
    (b / "caption" / "data" / "part-00000.parquet").write_bytes(b"partial")
    caption_images(b, [str(folder)], model=MODEL, batch_size=4, max_new_tokens=6, progress=False)
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in files)


def test_tar_and_parquet_inputs_feed_ingest_and_alignment(tmp_path: Path, models: Path) -> None:
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for member, data in [
            ("s0.jpg", _png(1)),
            ("s0.json", b"{}"),
            ("s1.json", b"{}"),  # a sample without an image
            ("s2.png", _png(2)),
            ("s3.webp", b"garbage"),
        ]:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    table = pa.table(
        {
            "id": ["p0", "p1", "p2"],
            "image": pa.array(
                [
                    {"bytes": _png(3), "path": None},
                    {"bytes": None, "path": None},
                    {"bytes": _png(4), "path": None},
                ]
            ),
        }
    )
    parquet = tmp_path / "images.parquet"
    pq.write_table(table, parquet)
    run = _run(tmp_path, models, "run")
    f = caption_images(run, [str(shard), str(parquet)], model=MODEL, max_new_tokens=6, progress=False)
    assert (f["in"], f["kept"], f["dropped"]) == (7, 4, {"missing_image": 2, "unreadable_image": 1})
    out = _table(run)
    assert out.column("id").to_pylist() == ["s0", "s2", "p0", "p2"]
    refs = out.column("image").to_pylist()
    assert refs[0] == str((run / "caption" / "images" / "part-00000" / "00000.png").resolve())
    assert (run / "caption" / "images" / "part-00000" / "00000.png").read_bytes() == _png(1)
    for ref in refs:  # the alignment filters load every reference as a file
        assert load_image(ref, root=None).size[1] == 20
    rejected = _table(run, "rejected").to_pylist()
    assert [(r["id"], r["reason"]) for r in rejected] == [
        ("s1", "missing_image"),
        ("s3", "unreadable_image"),
        ("p1", "missing_image"),
    ]
    result = pipeline.run(run, pipeline.load_run_config(run), stages=["ingest"], progress=False)
    assert (result["ingest"]["in"], result["ingest"]["kept"]) == (4, 4)
    pool = pq.read_table(run / "ingest" / "data" / "part-00000.parquet")
    assert pool.column("id").to_pylist() == ["s0", "s2", "p0", "p2"]
    assert pool.column("image_ref").to_pylist() == refs
    assert pool.column("caption").to_pylist() == out.column("caption").to_pylist()


def test_bad_inputs_are_user_errors(tmp_path: Path, models: Path) -> None:
    from synthvlm.core.errors import UserError

    run = _run(tmp_path, models, "run")
    with pytest.raises(UserError, match="no such file or folder"):
        caption_images(run, [str(tmp_path / "nope")], model=MODEL, max_new_tokens=6, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .jpg/.jpeg/.png/.webp image"):
        caption_images(run, [str(tmp_path / "empty")], model=MODEL, max_new_tokens=6, progress=False)
    pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "t.parquet")
    with pytest.raises(UserError, match="no image column"):
        caption_images(run, [str(tmp_path / "t.parquet")], model=MODEL, max_new_tokens=6, progress=False)
    unknown = "unknown builtin model 'builtin:nope'; valid: builtin:tiny-aesthetic, builtin:tiny-blip-cap"
    with pytest.raises(UserError, match=unknown):
        caption_images(run, [str(_write(tmp_path))], model="builtin:nope", progress=False)


def _write(tmp: Path) -> Path:
    path = tmp / "one.png"
    path.write_bytes(_png(0))
    return path


@pytest.mark.skipif(not COCO.is_dir(), reason="shared COCO mini photos not present")
def test_coco_mini_photos(tmp_path: Path, models: Path) -> None:
    run = _run(tmp_path, models, "run")
    f = caption_images(run, [str(COCO)], model=MODEL, batch_size=32, max_new_tokens=6, progress=False)
    assert (f["in"], f["kept"], f["dropped"], f["tasks_done"]) == (159, 159, {}, 1)
    result = pipeline.run(run, pipeline.load_run_config(run), stages=["ingest"], progress=False)
    assert (result["ingest"]["in"], result["ingest"]["kept"]) == (159, 159)
    pool = pq.read_table(run / "ingest" / "data" / "part-00000.parquet")
    assert pool.column("id").to_pylist()[0] == "000000000139"
    assert pool.column("image_ref").to_pylist()[0] == str((COCO / "000000000139.jpg").resolve())
    assert funnel(run, "caption")["complete"] is True


def test_cli_caption_then_ingest_without_inputs(tmp_path: Path, folder: Path, models: Path) -> None:
    import json

    from tests.pipeline.helpers import cli

    run = _run(tmp_path, models, "run")
    args = ["caption", str(folder), "--run", str(run), "--model", MODEL, "--max-new-tokens", "6", "-q"]
    assert cli(*args).returncode == 0
    assert cli("ingest", "--run", str(run), "-q").returncode == 0
    stages = json.loads(cli("status", str(run), "--json").stdout)["stages"]
    assert (stages["caption"]["in"], stages["caption"]["kept"]) == (7, 6)
    assert stages["caption"]["dropped"] == {"unreadable_image": 1}
    assert stages["ingest"]["in"] == 6
    refused = cli(*args[:-3], "--max-new-tokens", "7", "-q")
    assert refused.returncode == 2 and "--from caption" in refused.stderr
    assert cli(*args[:-3], "--max-new-tokens", "7", "--from", "caption", "-q").returncode == 0


def test_a_refused_caption_config_is_not_saved(tmp_path: Path, folder: Path, models: Path) -> None:
    run = _run(tmp_path, models, "run")
    caption_images(run, [str(folder)], model=MODEL, max_new_tokens=6, progress=False)
    saved = (run / "config.yaml").read_text()
    with pytest.raises(UserError) as info:
        caption_images(run, [str(folder)], model=MODEL, max_new_tokens=5, progress=False)
    assert "(changed: caption.max_new_tokens); rerun with --from caption" in str(info.value)
    assert (run / "config.yaml").read_text() == saved
    assert "max_new_tokens: 6" in saved
