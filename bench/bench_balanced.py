"""Balanced selection at scale: k-means + near-duplicates + cluster cap over 1M 512-d float16 image embeddings
(time, peak RSS), against scikit-learn's KMeans with its defaults on the full matrix; and the k-means step by
faiss and scikit-learn, each side in its own process."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import in_child, peak_rss, row, table

PEER = "scikit-learn KMeans(n_clusters=100, max_iter=20, random_state=0), other defaults, full float32 matrix"
GOAL_SECONDS, GOAL_GB = 60.0, 4.0
DIM, CLUSTERS, ITERATIONS, EPSILON, TOP_K = 512, 100, 20, 0.05, 100_000
GROUPS, COPIES = 200, 0.05
KINDS = ("ours", "faiss-sample", "faiss-full", "sklearn-sample", "sklearn-full", "minibatch-full")


def _write_embeddings(path: Path, n: int) -> None:
    """Unit rows = a shared direction (CLIP's cone) + one of GROUPS centres + noise with a decaying
    spectrum, each a third of the energy (cosines ~0.3 across groups, ~0.65 inside one); COPIES of the
    rows are another row of their chunk plus a little noise, i.e. near-duplicates (cosine ~0.99)."""
    rng = np.random.default_rng(0)
    cone = rng.standard_normal(DIM)
    cone /= np.linalg.norm(cone)
    centres = rng.standard_normal((GROUPS, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    scales = 1 / np.sqrt(1 + np.arange(DIM) / 16)
    scales /= np.linalg.norm(scales)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, DIM))
    for start in range(0, n, 65_536):
        m = min(65_536, n - start)
        noise = rng.standard_normal((m, DIM)) * scales
        x = cone + centres[rng.integers(0, GROUPS, m)] + noise
        copies = rng.random(m) < COPIES
        jitter = 0.1 * rng.standard_normal((copies.sum(), DIM)) * scales
        x[copies] = x[rng.integers(0, m, copies.sum())] + jitter
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()


def _sample(n: int) -> np.ndarray:
    m = min(n, 256 * CLUSTERS)
    return np.sort(np.random.default_rng(0).choice(n, m, replace=False))


def _assign(emb: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    out = np.empty(len(emb), dtype=np.int32)
    for s in range(0, len(emb), 32_768):
        out[s : s + 32_768] = np.argmax(np.asarray(emb[s : s + 32_768], np.float32) @ centroids.T, axis=1)
    return out


def _mean_cosine(emb: np.ndarray, labels: np.ndarray) -> float:
    """Mean cosine of each row to its cluster's normalised mean: k-means' objective, higher is better."""
    sums = np.zeros((labels.max() + 1, emb.shape[1]))
    for s in range(0, len(emb), 65_536):
        np.add.at(sums, labels[s : s + 65_536], np.asarray(emb[s : s + 65_536], np.float64))
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    total = 0.0
    for s in range(0, len(emb), 65_536):
        block = np.asarray(emb[s : s + 65_536], np.float64)
        total += float(np.einsum("ij,ij->", block, sums[labels[s : s + 65_536]]))
    return total / len(emb)


def _child(kind: str, path: str) -> None:
    """One side in this fresh process: seconds (wall, CPU), own peak RSS, and what it found, as JSON."""
    import faiss

    from synthvlm.select.balanced import cluster, near_duplicates, quota_fill

    emb = np.load(path)
    n = len(emb)
    loaded_rss = peak_rss()
    steps: dict[str, float] = {}
    extra: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "ours":
        order = np.random.default_rng(1).permutation(n)  # random ranks
        labels = cluster(emb, clusters=CLUSTERS, iterations=ITERATIONS, seed=0)
        steps["cluster"] = time.perf_counter() - t0
        dup = near_duplicates(emb, order, labels, epsilon=EPSILON)
        steps["near_duplicates"] = time.perf_counter() - t0 - steps["cluster"]
        kept = order[~dup[order]]
        chosen = quota_fill(labels[kept], TOP_K)
        steps["quota_fill"] = time.perf_counter() - t0 - steps["cluster"] - steps["near_duplicates"]
        per_cluster = np.bincount(labels[kept[chosen]], minlength=CLUSTERS)
        sizes = np.bincount(labels, minlength=CLUSTERS)
        extra = {
            "near_duplicates": int(dup.sum()),
            "selected": int(chosen.sum()),
            "cap": int(per_cluster.max()),
            "cluster_sizes": [int(sizes.min()), int(np.median(sizes)), int(sizes.max())],
            "sum_sq_over_n2": float((sizes.astype(np.float64) ** 2).sum() / n**2),
        }
    elif kind in ("faiss-sample", "faiss-full"):
        train = np.ascontiguousarray(emb[_sample(n)] if kind == "faiss-sample" else emb, dtype=np.float32)
        km = faiss.Kmeans(
            DIM, CLUSTERS, niter=ITERATIONS, seed=0, spherical=True, max_points_per_centroid=len(train)
        )
        km.train(train)
        del train
        labels = _assign(emb, km.centroids)
    else:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        train = np.ascontiguousarray(emb[_sample(n)] if kind == "sklearn-sample" else emb, dtype=np.float32)
        if kind == "minibatch-full":
            model = MiniBatchKMeans(n_clusters=CLUSTERS, random_state=0).fit(train)
        else:
            model = KMeans(n_clusters=CLUSTERS, max_iter=ITERATIONS, random_state=0).fit(train)
        extra["iterations"] = int(model.n_iter_)
        del train
        labels = _assign(emb, model.cluster_centers_.astype(np.float32))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = peak_rss()
    if kind != "ours":
        extra["mean_cosine"] = _mean_cosine(emb, labels)
    result = {"seconds": seconds, "cpu": cpu, "rss": rss, "loaded_rss": loaded_rss, "steps": steps}
    print(json.dumps({**result, **extra}))


def _measure(kind: str, path: Path) -> dict[str, Any]:
    result = in_child(__file__, kind, str(path))
    print(f"[balanced] {kind}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Balanced selection and the k-means step on synthetic embeddings, each side in its own subprocess."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200k rows instead of 1M")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return []
    n = 200_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "emb.npy"
        t0 = time.perf_counter()
        _write_embeddings(path, n)
        write_s = time.perf_counter() - t0
        results = {kind: _measure(kind, path) for kind in KINDS}
    ours, peer = results["ours"], results["sklearn-full"]
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in ours["steps"].items())
    setup = (
        f"{n:,} x {DIM} float16, clusters {CLUSTERS}, iterations {ITERATIONS}, epsilon {EPSILON}, "
        f"top_k {TOP_K:,}, random ranks"
    )
    rows = [
        row(
            f"balanced select, time ({n / 1e6:g}M rows)",
            ours=ours["seconds"],
            peer=peer["seconds"],
            peer_name=PEER + " (clustering alone)",
            unit="s",
            notes=f"{setup}; goal <= {GOAL_SECONDS:g} s; {steps}; CPU {ours['cpu']:.0f} s; "
            f"{ours['near_duplicates']:,} near-duplicates, {ours['selected']:,} selected, cap {ours['cap']}, "
            f"cluster sizes min/median/max {ours['cluster_sizes']} (embeddings written in {write_s:.0f} s, "
            "untimed)",
        ),
        row(
            f"balanced select, peak RSS ({n / 1e6:g}M rows)",
            ours=ours["rss"] / 1e9,
            peer=peer["rss"] / 1e9,
            peer_name=PEER,
            unit="GB",
            notes=f"VmHWM of each side's own process, the loaded embeddings "
            f"({ours['loaded_rss'] / 1e9:.2f} GB) included; goal <= {GOAL_GB:g} GB",
        ),
    ]
    names = {
        "faiss-sample": "faiss Kmeans spherical, 256 rows/cluster sample, then blocked assignment (ours)",
        "faiss-full": "faiss Kmeans spherical, full matrix",
        "sklearn-sample": "sklearn KMeans (max_iter 20), same sample, then blocked assignment",
        "minibatch-full": "sklearn MiniBatchKMeans defaults, full matrix",
    }
    for kind, name in names.items():
        r = results[kind]
        rows.append(
            row(
                f"k-means step: {name}",
                ours=r["seconds"],
                peer=peer["seconds"],
                peer_name=PEER,
                unit="s",
                notes=f"CPU {r['cpu']:.0f} s vs {peer['cpu']:.0f} s; peak RSS {r['rss'] / 1e9:.2f} vs "
                f"{peer['rss'] / 1e9:.2f} GB; mean cosine to centroid {r['mean_cosine']:.4f} vs "
                f"{peer['mean_cosine']:.4f}"
                + (f"; {r['iterations']} iterations" if "iterations" in r else ""),
            )
        )
    return rows


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result:
        print(table(result))
