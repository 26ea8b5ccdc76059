"""Balanced selection at scale: k-means, SemDeDup inside sub-clusters and the cluster cap over 1M 512-d
float16 image embeddings (time, peak RSS, per-step times), against the previous near-duplicate step
(SemDeDup over whole clusters, kept below as the baseline) and scikit-learn's KMeans with its defaults on the
full matrix; the rows each rule flags and selects, side by side; and the k-means step by faiss and
scikit-learn. Each side runs in its own process."""

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
BASELINE = "the previous near-duplicate step: SemDeDup over whole clusters, 128-term sketch screen (below)"
GOAL_SECONDS, GOAL_GB = 60.0, 4.0
DIM, CLUSTERS, ITERATIONS, EPSILON = 512, 100, 20, 0.05
GROUPS, COPIES = 200, 0.05
SELECTIONS = ("ours", "whole", "baseline")
KINDS = (*SELECTIONS, "faiss-sample", "faiss-full", "sklearn-sample", "sklearn-full", "minibatch-full")


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


# The baseline: the near-duplicate step as it was before sub-clusters (SemDeDup over each whole cluster;
# a sketch screens rows, and rows that pass are compared in full with every better-ranked row).

B_BLOCK_ROWS, B_BLOCK_COLS, B_SKETCH_MIN_ROWS, B_SKETCH_DIMS, B_SKETCH_MARGIN = 1024, 16_384, 4096, 127, 1e-3


def _baseline_near_duplicates(
    image_emb: np.ndarray, order: np.ndarray, labels: np.ndarray, *, epsilon: float
) -> np.ndarray:
    duplicate = np.zeros(len(image_emb), dtype=bool)
    if epsilon == 0 or len(order) == 0:
        return duplicate
    threshold = np.float32(1 - epsilon)
    ranked_labels = labels[order]
    by_cluster = np.argsort(ranked_labels, kind="stable")
    members = order[by_cluster]
    starts = np.flatnonzero(np.diff(ranked_labels[by_cluster])) + 1
    for rows in np.split(members, starts):
        if len(rows) > 1:
            x = np.asarray(image_emb[rows], dtype=np.float32)
            duplicate[rows] = _baseline_dominated(x / np.linalg.norm(x, axis=1, keepdims=True), threshold)
    return duplicate


def _baseline_dominated(x: np.ndarray, threshold: np.float32) -> np.ndarray:
    check = np.arange(len(x))
    if len(x) >= B_SKETCH_MIN_ROWS and x.shape[1] > 2 * (B_SKETCH_DIMS + 1):
        sketch = _baseline_sketch(x)
        check = check[_baseline_earlier_max(sketch, check) > threshold - B_SKETCH_MARGIN]
    dominated = np.zeros(len(x), dtype=bool)
    dominated[check] = _baseline_earlier_max(x, check) > threshold
    return dominated


def _baseline_sketch(x: np.ndarray) -> np.ndarray:
    sample = x[:: max(1, len(x) // 2048)].astype(np.float64)
    basis = np.random.default_rng(0).standard_normal((x.shape[1], B_SKETCH_DIMS))
    for _ in range(3):
        basis = sample.T @ (sample @ basis)
        basis = basis @ np.linalg.inv(np.linalg.cholesky(basis.T @ basis)).T
    basis = basis.astype(np.float32)
    coords = x @ basis
    rest = np.linalg.norm(x - coords @ basis.T, axis=1)
    return np.hstack([coords, rest[:, None]])


def _baseline_earlier_max(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    best = np.full(len(rows), -np.inf, dtype=np.float32)
    for b in range(0, len(rows), B_BLOCK_ROWS):
        block = rows[b : b + B_BLOCK_ROWS]
        queries = x[block]
        for c0 in range(0, int(block[-1]), B_BLOCK_COLS):
            c1 = min(c0 + B_BLOCK_COLS, int(block[-1]))
            products = queries @ x[c0:c1].T
            if c1 > block[0]:
                lo = max(c0, int(block[0]))
                tail = products[:, lo - c0 :]
                tail[np.arange(lo, c1)[None, :] >= block[:, None]] = -np.inf
            np.maximum(best[b : b + len(block)], products.max(axis=1), out=best[b : b + len(block)])
    return best


def _child(kind: str, path: str, top_k: str) -> None:
    """One side in this fresh process: seconds (wall, CPU), own peak RSS, and what it found, as JSON; a
    selection side also leaves its flags and selected rows beside the embeddings (KIND.npz)."""
    import faiss

    from synthvlm.select.balanced import cluster, near_duplicates, quota_fill, subclusters

    emb = np.load(path)
    n = len(emb)
    loaded_rss = peak_rss()
    steps: dict[str, float] = {}
    extra: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()

    def step(name: str, start: float) -> float:
        now = time.perf_counter()
        steps[name] = now - start
        return now

    if kind in SELECTIONS:
        order = np.random.default_rng(1).permutation(n)  # random ranks
        labels = cluster(emb, clusters=CLUSTERS, iterations=ITERATIONS, seed=0)
        t = step("cluster", t0)
        if kind == "ours":
            groups = subclusters(emb, order, labels, iterations=ITERATIONS, seed=0)
            t = step("subclusters", t)
            dup = near_duplicates(emb, order, groups, epsilon=EPSILON)
            sizes = np.bincount(groups[groups >= 0])
            extra["subclusters"] = [len(sizes), int(np.median(sizes)), int(sizes.max())]
        elif kind == "whole":
            dup = near_duplicates(emb, order, labels, epsilon=EPSILON)
        else:
            dup = _baseline_near_duplicates(emb, order, labels, epsilon=EPSILON)
        t = step("near_duplicates", t)
        kept = order[~dup[order]]
        chosen = kept[quota_fill(labels[kept], int(top_k))]
        step("quota_fill", t)
        np.savez(Path(path).with_name(f"{kind}.npz"), duplicate=dup, chosen=chosen)
        per_cluster = np.bincount(labels[chosen], minlength=CLUSTERS)
        sizes = np.bincount(labels, minlength=CLUSTERS)
        extra |= {
            "near_duplicates": int(dup.sum()),
            "selected": len(chosen),
            "cap": int(per_cluster.max()),
            "cluster_sizes": [int(sizes.min()), int(np.median(sizes)), int(sizes.max())],
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
    if kind not in SELECTIONS:
        extra["mean_cosine"] = _mean_cosine(emb, labels)
    result = {"seconds": seconds, "cpu": cpu, "rss": rss, "loaded_rss": loaded_rss, "steps": steps}
    print(json.dumps({**result, **extra}))


def _measure(kind: str, path: Path, top_k: int) -> dict[str, Any]:
    result = in_child(__file__, kind, str(path), str(top_k))
    print(f"[balanced] {kind}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def _agreement(folder: Path, side: str, top_k: int) -> dict[str, int]:
    """The rows `side` flags and selects against the baseline's: both counts, the two differences, and how
    many selected rows the two selections share."""
    ours, base = np.load(folder / f"{side}.npz"), np.load(folder / "baseline.npz")
    dup, ref = ours["duplicate"], base["duplicate"]
    return {
        "flagged": int(dup.sum()),
        "flagged_baseline": int(ref.sum()),
        "only_baseline": int((ref & ~dup).sum()),
        "only_ours": int((dup & ~ref).sum()),
        "selected_both": len(np.intersect1d(ours["chosen"], base["chosen"])),
        "top_k": top_k,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Balanced selection and the k-means step on synthetic embeddings, each side in its own subprocess."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200k rows instead of 1M")
    parser.add_argument("--rows", type=int, help="rows of embeddings (default 1M, 200k with --quick)")
    parser.add_argument("--top-k", type=int, default=100_000, help="rows selected (default 100,000)")
    parser.add_argument("--sides", help=f"comma-separated subset of {','.join(KINDS)} (default: all)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "TOP_K"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return []
    n = args.rows or (200_000 if args.quick else 1_000_000)
    kinds = args.sides.split(",") if args.sides else list(KINDS)
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown sides {sorted(unknown)}; valid: {', '.join(KINDS)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "emb.npy"
        t0 = time.perf_counter()
        _write_embeddings(path, n)
        write_s = time.perf_counter() - t0
        results = {kind: _measure(kind, path, args.top_k) for kind in kinds}
        agree = {
            side: _agreement(path.parent, side, args.top_k)
            for side in ("ours", "whole")
            if side in results and "baseline" in results
        }
    setup = (
        f"{n:,} x {DIM} float16, clusters {CLUSTERS}, iterations {ITERATIONS}, epsilon {EPSILON}, "
        f"top_k {args.top_k:,}, random ranks; embeddings written in {write_s:.0f} s, untimed"
    )
    rows = []
    size = f"{n / 1e6:g}M rows"
    base, peer = results.get("baseline"), results.get("sklearn-full")
    for side, label in (("ours", "SemDeDup in sub-clusters"), ("whole", "SemDeDup in whole clusters")):
        if side not in results:
            continue
        r = results[side]
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r["steps"].items())
        found = (
            f"{r['near_duplicates']:,} near-duplicates, {r['selected']:,} selected, cap {r['cap']}, "
            f"cluster sizes min/median/max {r['cluster_sizes']}"
            + (f", sub-clusters count/median/max {r['subclusters']}" if "subclusters" in r else "")
        )
        if side in agree:
            a = agree[side]
            found += (
                f"; vs the baseline: {a['only_baseline']:,} flagged by the baseline only, "
                f"{a['only_ours']:,} by this only, {a['selected_both']:,} of {a['top_k']:,} selected rows "
                "shared"
            )
        rows.append(
            row(
                f"balanced select ({label}), time ({size})",
                ours=r["seconds"],
                peer=base["seconds"] if base else None,
                peer_name=BASELINE,
                unit="s",
                notes=f"{setup}; goal <= {GOAL_SECONDS:g} s; {steps}; CPU {r['cpu']:.0f} s"
                + (f" (baseline CPU {base['cpu']:.0f} s)" if base else "")
                + f"; {found}",
            )
        )
        if side == "ours":
            rows.append(
                row(
                    f"balanced select, peak RSS ({size})",
                    ours=r["rss"] / 1e9,
                    peer=base["rss"] / 1e9 if base else None,
                    peer_name=BASELINE,
                    unit="GB",
                    notes=f"VmHWM of each side's own process, the loaded embeddings "
                    f"({r['loaded_rss'] / 1e9:.2f} GB) included; goal <= {GOAL_GB:g} GB",
                )
            )
            if peer:
                rows.append(
                    row(
                        f"balanced select vs clustering alone, time ({size})",
                        ours=r["seconds"],
                        peer=peer["seconds"],
                        peer_name=PEER + " (clustering alone)",
                        unit="s",
                        notes=f"peak RSS {r['rss'] / 1e9:.2f} vs {peer['rss'] / 1e9:.2f} GB",
                    )
                )
    if base:
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in base["steps"].items())
        rows.append(
            row(
                f"balanced select, baseline, time ({size})",
                ours=base["seconds"],
                peer=peer["seconds"] if peer else None,
                peer_name=PEER + " (clustering alone)",
                unit="s",
                notes=f"{steps}; CPU {base['cpu']:.0f} s; {base['near_duplicates']:,} near-duplicates; "
                f"peak RSS {base['rss'] / 1e9:.2f} GB",
            )
        )
    names = {
        "faiss-sample": "faiss Kmeans spherical, 256 rows/cluster sample, then blocked assignment (ours)",
        "faiss-full": "faiss Kmeans spherical, full matrix",
        "sklearn-sample": "sklearn KMeans (max_iter 20), same sample, then blocked assignment",
        "minibatch-full": "sklearn MiniBatchKMeans defaults, full matrix",
    }
    for kind, name in names.items():
        if kind not in results:
            continue
        r = results[kind]
        rows.append(
            row(
                f"k-means step: {name}",
                ours=r["seconds"],
                peer=peer["seconds"] if peer else None,
                peer_name=PEER,
                unit="s",
                notes=f"CPU {r['cpu']:.0f} s; peak RSS {r['rss'] / 1e9:.2f} GB; mean cosine to centroid "
                f"{r['mean_cosine']:.4f}"
                + (
                    f" (peer: CPU {peer['cpu']:.0f} s, {peer['rss'] / 1e9:.2f} GB, {peer['mean_cosine']:.4f})"
                    if peer
                    else ""
                )
                + (f"; {r['iterations']} iterations" if "iterations" in r else ""),
            )
        )
    return rows


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result:
        print(table(result))
