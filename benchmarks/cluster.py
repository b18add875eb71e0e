"""Clustering speed and accuracy (paper §III-B): 'fast' vs 'exact' HDBSCAN, in one run.

``python -m benchmarks cluster`` writes ``benchmarks/cluster.md`` with three parts:

1. **Test rooms.** The held-out synthetic test rooms segmented with the same weights, once with
   each clustering method: clustering seconds per scene and ScanNet AP / AP50 / AP25 from
   :func:`ssen_ros.scoring.score_scenes`. Issue 6's goal: 'fast' within 0.01 AP and AP50.
   'fast' also runs with the ``hdbscan`` package's Boruvka spanning tree on its sample
   (``neighbours: 0``) in place of the k-nearest-neighbour tree, to show what that choice costs.
2. **Scaling.** Synthetic 8-D embeddings shaped like trained SSEN output (balls of radius about
   delta_pull = 0.1 around means at least 2 * delta_push = 1.0 apart, 40 % of them within
   1.0-1.1 of a neighbour; 3 % scattered outliers), 100k to 1M foreground voxels,
   with the cluster sizes the segmenter uses at the weights' voxel size. Goal: <= 0.5 s at 100k
   on 2 cores, near-linear to 1M; up to ``--exact-max`` also 'fast' with the Boruvka tree and
   'exact'. Reports ARI against the truth and the share of true
   instances found (IoU > 0.5).
3. **Sweep** of 'fast''s ``sample_size`` at 100k, the measurements behind the default.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from benchmarks import REPO, peak_rss_mb, write_results

DEFAULT_SCENES = REPO / "data" / "rooms" / "test"


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (as result files show it)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def ssen_like_embeddings(n: int, min_size: int, max_size: int, seed: int = 0, d: int = 8,
                         radius: float = 0.1, outliers: float = 0.03
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` embeddings (float64 (n, d)) and their instance ids (-1 for outliers).

    Instance sizes are log-uniform in [min_size, max_size]; points are Gaussian around their
    mean with a median distance ``radius``; 40 % of the means sit 1.0-1.1 from an earlier one,
    the rest anywhere in [-3, 3]^d, all at least 1.0 apart (eqs. 2 and 4 of the paper).
    """
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < n * (1 - outliers):
        sizes.append(int(np.exp(rng.uniform(np.log(min_size), np.log(max_size)))))
    sizes[-1] -= sum(sizes) - int(n * (1 - outliers))
    means = np.zeros((0, d))
    while len(means) < len(sizes):
        if len(means) and rng.random() < 0.4:
            step = rng.normal(size=d)
            m = means[rng.integers(len(means))] + step / np.linalg.norm(step) * rng.uniform(1.0, 1.1)
        else:
            m = rng.uniform(-3, 3, d)
        if len(means) == 0 or np.linalg.norm(means - m, axis=1).min() >= 1.0:
            means = np.vstack([means, m])
    sigma = radius / np.sqrt(d - 0.5)  # median of a chi distribution with d dof ~ sqrt(d - 0.5)
    x = np.concatenate([m + rng.normal(0, sigma, (s, d)) for m, s in zip(means, sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    k = n - len(x)
    x = np.concatenate([x, rng.uniform(-3.5, 3.5, (k, d))])
    y = np.concatenate([y, np.full(k, -1)])
    order = rng.permutation(n)
    return x[order], y[order]


def instances_found(truth: np.ndarray, labels: np.ndarray) -> float:
    """Share of true instances matched by a cluster with IoU > 0.5."""
    valid = (truth >= 0) & (labels >= 0)
    pairs, inter = np.unique(np.stack([truth[valid], labels[valid]]), axis=1, return_counts=True)
    t_size = np.bincount(truth[truth >= 0])
    l_size = np.bincount(labels[labels >= 0])
    iou = inter / (t_size[pairs[0]] + l_size[pairs[1]] - inter)
    return len(np.unique(pairs[0][iou > 0.5])) / max(1, len(t_size))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the points that two labellings (-1 = noise) treat alike: instances matched one
    to one by overlap (Hungarian), noise matched to noise; over points either calls an instance."""
    from scipy.optimize import linear_sum_assignment

    either = (a >= 0) | (b >= 0)
    if not either.any():
        return 1.0
    a, b = a[either] + 1, b[either] + 1  # noise becomes 0
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    gain = table.copy()
    gain[0, 1:] = gain[1:, 0] = 0  # noise only matches noise
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return float(gain[rows, cols].sum() / len(a))


class _Recorder:
    """Calls a segmenter and keeps each result's timings, foreground voxels and instance ids."""

    def __init__(self, segmenter):
        self.segmenter, self.timings, self.foreground, self.instances = segmenter, [], [], []

    def __call__(self, points, colors=None):
        result = self.segmenter(points, colors)
        self.timings.append(result.timings)
        self.foreground.append(result.num_foreground_voxels)
        self.instances.append(result.instance)
        return result


def room_scores(weights: str, scenes: Sequence[Path], sample_sizes: Sequence[int],
                seeds: Sequence[int]) -> tuple[list[str], dict]:
    """Part 1: 'exact', then 'fast' at each sample size and sample seed, and with the
    ``hdbscan`` package's own spanning tree instead of the k-nearest-neighbour one, on the same
    scenes and weights; table rows and the raw numbers."""
    from ssen_ros.config import SegmenterConfig
    from ssen_ros.scoring import score_scenes
    from ssen_ros.segmenter import Segmenter

    base = SegmenterConfig(weights=weights, backend="torch", device="cpu")
    groups = [(f"fast, sample_size {size:,}", {"method": "fast", "sample_size": size})
              for size in sample_sizes]
    groups.append((f"fast, hdbscan's Boruvka tree (neighbours 0), sample_size {base.cluster.sample_size:,}",
                   {"method": "fast", "neighbours": 0}))
    runs = [("exact", "", {"method": "exact"})] + [
        (f"{group}, seed {seed}", group, changes | {"seed": seed})
        for group, changes in groups for seed in seeds]
    rows, raw, exact_labels = [], {}, None
    for name, group, changes in runs:
        recorder = _Recorder(Segmenter(replace(base, cluster=replace(base.cluster, **changes))))
        s = score_scenes(recorder, scenes).summary()
        cluster = [t["cluster"] for t in recorder.timings]
        seconds = statistics.median(cluster)
        exact_labels = exact_labels or recorder.instances
        agree = [agreement(e, f) for e, f in zip(exact_labels, recorder.instances)]
        e = raw.get("exact", s)
        raw[name] = s | {"dAP": s["AP"] - e["AP"], "dAP50": s["AP50"] - e["AP50"], "group": group,
                         "seconds": seconds}
        rows.append(f"| {name} | {seconds:.3f} | {max(cluster):.3f} | {s['AP']:.4f} | "
                    f"{s['AP50']:.4f} | {s['AP25']:.4f} | {s['mIoU']:.4f} | {s['AP'] - e['AP']:+.4f} | "
                    f"{s['AP50'] - e['AP50']:+.4f} | {statistics.median(agree):.3f} |")
    for group, _ in groups:
        mine = [r for r in raw.values() if r.get("group") == group]
        d_ap, d_ap50 = [r["dAP"] for r in mine], [r["dAP50"] for r in mine]
        rows.append(f"| **{group}: mean of {len(mine)} seeds** | "
                    f"**{statistics.mean(r['seconds'] for r in mine):.3f}** | | | | | | "
                    f"**{statistics.mean(d_ap):+.4f}** ({min(d_ap):+.4f}..{max(d_ap):+.4f}) | "
                    f"**{statistics.mean(d_ap50):+.4f}** ({min(d_ap50):+.4f}..{max(d_ap50):+.4f}) | |")
    raw["foreground"] = recorder.foreground
    return rows, raw


def _cluster_config(voxel_size: float, **changes):
    from ssen_ros.config import ClusterConfig
    from ssen_ros.segmenter import scale_cluster_sizes

    return scale_cluster_sizes(replace(ClusterConfig(), **changes), voxel_size)


def _time_fit(config, x: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    from ssen_ros.cluster import EmbeddingClusterer

    times, labels = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        labels = EmbeddingClusterer(config).fit_predict(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), labels


def scaling(voxel_size: float, sizes: Sequence[int], exact_max: int, repeat: int) -> list[str]:
    """Part 2: 'fast' (and 'exact' up to ``exact_max``) on synthetic embeddings of each size."""
    from sklearn.metrics import adjusted_rand_score

    rows = []
    first: Optional[tuple[int, float]] = None
    for n in sizes:
        x, y = _embeddings(n, voxel_size)
        for method, changes in (("fast", {}), ("fast, Boruvka tree", {"neighbours": 0}),
                                ("exact", {"method": "exact"})):
            if method != "fast" and n > exact_max:
                continue
            config = _cluster_config(voxel_size, **changes)
            seconds, labels = _time_fit(config, x, repeat if method != "exact" else 1)
            inl = y >= 0
            growth = ""
            if method == "fast":
                first = first or (n, seconds)
                growth = f"{seconds / first[1]:.1f}x for {n / first[0]:.0f}x points"
            rows.append(f"| {n:,} | {method} | {len(np.unique(y[inl]))} | {seconds:.3f} | {growth} | "
                        f"{adjusted_rand_score(y[inl], labels[inl]):.4f} | {instances_found(y, labels):.3f} |")
    return rows


def _embeddings(n: int, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Instances from the smallest the segmenter keeps (min_cluster_size) to a 40k-voxel object
    at 2 cm, both scaled to ``voxel_size`` like the segmenter's cluster sizes."""
    smallest = _cluster_config(voxel_size).min_cluster_size
    largest = max(2 * smallest, round(40_000 * (0.02 / voxel_size) ** 2))
    return ssen_like_embeddings(n, 2 * smallest, largest, seed=n)


def sweep(voxel_size: float, n: int, sample_sizes: Sequence[int], repeat: int) -> list[str]:
    """Part 3: 'fast' at ``n`` points for each ``sample_size``."""
    from sklearn.metrics import adjusted_rand_score

    x, y = _embeddings(n, voxel_size)
    rows = []
    for s in sample_sizes:
        seconds, labels = _time_fit(_cluster_config(voxel_size, method="fast", sample_size=s), x, repeat)
        inl = y >= 0
        rows.append(f"| {s:,} | {seconds:.3f} | {adjusted_rand_score(y[inl], labels[inl]):.4f} | "
                    f"{instances_found(y, labels):.3f} |")
    return rows


def main(argv: "list[str] | None" = None) -> int:
    import torch

    from ssen_ros import checkpoint
    from ssen_ros.config import ClusterConfig
    from ssen_ros.data.dataset import find_scenes

    parser = argparse.ArgumentParser(prog="python -m benchmarks cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="default", help="weights file for the test-room part")
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of test scenes")
    parser.add_argument("--max-scenes", type=int, default=0, help="use only the first N scenes (0: all)")
    parser.add_argument("--room-sample-sizes", default="10000",
                        help="'fast' sample sizes tried on the test rooms")
    parser.add_argument("--seeds", default="0,1,2", help="'fast' sample seeds tried on the test rooms")
    parser.add_argument("--sizes", default="100000,200000,500000,1000000",
                        help="embedding counts for the scaling part")
    parser.add_argument("--exact-max", type=int, default=100_000, help="largest count 'exact' runs on")
    parser.add_argument("--sweep", default="2000,4000,6000,10000,20000", help="sample sizes at 100k")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per 'fast' measurement (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (HDBSCAN uses all cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    weights = str(checkpoint.resolve(args.weights))
    spec = checkpoint.load(weights, backend="torch")[0]
    scenes = find_scenes(args.scenes)[: args.max_scenes or None]
    defaults = ClusterConfig()
    room_rows, raw = room_scores(weights, scenes, [int(s) for s in args.room_sample_sizes.split(",")],
                                 [int(s) for s in args.seeds.split(",")])
    fg = raw["foreground"]
    body = [
        f"Weights `{Path(weights).name}` ({spec.arch}, {spec.voxel_size} m voxels); cluster sizes "
        f"stated at 2 cm (min_cluster_size {defaults.min_cluster_size}, min_samples "
        f"{defaults.min_samples or defaults.min_cluster_size}) and scaled to the voxel size: "
        f"{_cluster_config(spec.voxel_size).min_cluster_size}. 'fast' defaults: sample_size "
        f"{defaults.sample_size}, assign_radius {defaults.assign_radius}.",
        "",
        f"## 1. Test rooms: {len(scenes)} scenes of `{shown(args.scenes)}`, same weights, both methods",
        "",
        f"Foreground voxels per scene: median {int(statistics.median(fg)):,}, max {max(fg):,}. "
        "Backend torch, no rotation averaging. Goal: 'fast' within 0.01 AP and AP50 of 'exact'. "
        "'agreement': per scene, the share of the points in an instance (by either method) that "
        "'fast' and 'exact' treat alike, instances matched one to one (median over scenes).",
        "",
        "| clustering | cluster s/scene (median) | max | AP | AP50 | AP25 | mIoU | AP - exact | "
        "AP50 - exact | agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *room_rows,
        "",
        "## 2. Scaling on synthetic SSEN-like embeddings (8-D)",
        "",
        f"'fast': median of {args.repeat} runs; 'exact': one run. Goal: 'fast' <= 0.5 s at 100k.",
        "",
        "| foreground voxels | clustering | instances | seconds | growth | ARI (inliers) | instances found |",
        "|---|---|---|---|---|---|---|",
        *scaling(spec.voxel_size, [int(s) for s in args.sizes.split(",")], args.exact_max, args.repeat),
        "",
        "## 3. 'fast' sample_size at 100k",
        "",
        "| sample_size | seconds | ARI (inliers) | instances found |",
        "|---|---|---|---|",
        *sweep(spec.voxel_size, 100_000, [int(s) for s in args.sweep.split(",")], args.repeat),
        "",
        f"Peak RSS {peak_rss_mb():.0f} MiB.",
    ]
    path = write_results("cluster", "Clustering: fast vs exact HDBSCAN", "\n".join(body))
    print(path.read_text())
    return 0
