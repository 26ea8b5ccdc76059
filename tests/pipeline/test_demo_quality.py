"""configs/demo-quality.yaml end to end: every pair scorer's column, and the balanced selection, recomputed
independently from what the run stored."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthvlm.config import load_config
from synthvlm.core import schema
from synthvlm.score.pairs import scorer_class
from synthvlm.select.balanced import cluster, near_duplicates, quota_fill
from synthvlm.stages.select import key_values, rank_candidates
from tests.pipeline.helpers import cli

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "demo-quality.yaml"


@pytest.fixture(scope="module")
def run(quality_run: Path) -> Path:
    return quality_run


def test_the_score_table_has_every_scorers_columns(run):
    scores = pq.read_table(run / "score" / "data")
    assert scores.column_names[6:] == [
        "clip",
        "ssim",
        "weighted",
        "siglip",
        "pickscore",
        "vqascore",
        "nsfw",
        "nsfw_margin",
        "aesthetic",
    ]
    embeddings = pq.read_table(run / "score" / "embeddings")
    assert embeddings.column("key").to_pylist() == scores.column("key").to_pylist()


def test_each_scorer_column_is_what_the_scorer_gives_on_the_stored_images(run):
    config = load_config(RECIPE).resolved()
    scores = pq.read_table(
        run / "score" / "data", filters=[("image_shard", "=", "generate/images/part-00000.tar")]
    )
    with tarfile.open(run / "generate" / "images" / "part-00000.tar") as tar:
        blobs = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    rows = scores.to_pylist()
    images = [Image.open(io.BytesIO(blobs[r["image_name"]])).convert("RGB") for r in rows]
    captions = [r["caption"] for r in rows]
    assert len(rows) == 16  # one generate shard, one score batch: the layout the stage scored it in
    models = run / "models"
    for name in config.score.scorers.enabled():
        scorer = scorer_class(name)(
            getattr(config.score.scorers, name),
            run_dir=run,
            models_dir=models,
            device="cpu",
            batch_size=config.score.batch_size,
            workers=1,
        )
        for column, values in scorer.score(images, captions).items():
            assert scores.column(column).to_pylist() == values.tolist(), column


def test_balanced_selection_is_its_rules_applied_to_the_stored_scores(run):
    config = load_config(RECIPE).resolved()
    scores = pq.read_table(run / "score" / "data")
    image_emb = schema.embedding_matrix(pq.read_table(run / "score" / "embeddings").column("image_emb"))
    value = key_values(scores, config.select.key)
    assert np.array_equal(
        value, scores.column("vqascore").to_numpy() + 0.5 * scores.column("ssim").to_numpy()
    )
    safe = np.flatnonzero(~scores.column("nsfw").to_numpy(zero_copy_only=False))
    keyed = scores.select(["caption_id", "candidate_index"]).append_column("value", [value])
    ranked = safe[rank_candidates(keyed.take(safe), key="value", best_of_n=True)]
    b = config.select.balanced
    labels = np.zeros(len(scores), dtype=np.int32)
    labels[ranked] = cluster(
        image_emb[ranked], clusters=b.clusters, iterations=b.iterations, seed=config.seed
    )
    duplicate = near_duplicates(image_emb, ranked, labels, epsilon=b.epsilon)
    kept = ranked[~duplicate[ranked]]
    chosen = kept[quota_fill(labels[kept], 24)]

    selection = pq.read_table(run / "select" / "data")
    keys = scores.column("key").to_numpy(zero_copy_only=False)
    assert selection.column("key").to_pylist() == keys[chosen].tolist()
    assert selection.column("rank").to_pylist() == list(range(1, 25))

    status = json.loads(cli("status", str(run), "--json").stdout)["stages"]["select"]
    displaced = len(np.setdiff1d(kept[:24], chosen))
    n = len(scores)
    expected = {
        "cluster_quota": displaced,
        "near_duplicate_image": int(duplicate.sum()),
        "not_best_of_n": len(safe) - len(ranked),
        "unsafe": n - len(safe),
        "not_selected": len(kept) - 24 - displaced,
    }
    assert status["dropped"] == {r: c for r, c in expected.items() if c}
    assert status["in"] == n == status["kept"] + sum(status["dropped"].values())
    assert displaced > 0 and duplicate.sum() > 0  # the demo exercises both rules


def test_the_report_names_a_weighted_sum_key_and_ranks_by_it(run, tmp_path):
    from synthvlm.report.build import build_report

    path = build_report(run, out=tmp_path / "report.html", datasets=[], grid=4, target=1000, progress=False)
    html = path.read_text(encoding="utf-8")
    assert "Ranking key <code>1·vqascore + 0.5·ssim</code>; selection 24 of a best-of-N pool of 43" in html
    # every scored column, the ranking formula too, has its histogram; Table 4 has each as a column
    columns = ["clip", "ssim", "weighted", "siglip", "pickscore", "vqascore", "nsfw_margin", "aesthetic"]
    files = [f"hist_{c}.png" for c in columns] + ["hist_1_vqascore_0.5_ssim.png"]  # ASCII, no spaces
    for metric, name in zip([*columns, "1·vqascore + 0.5·ssim"], files, strict=True):
        assert f'<img src="report_assets/{name}" alt="histogram of {metric}">' in html
        assert (tmp_path / "report_assets" / name).is_file()
    header = html.split('<table id="table4-table">', 1)[1].split("</tr>", 1)[0]
    assert [c.removeprefix("<th>mean ") for c in header.split("</th>") if "mean " in c] == columns
