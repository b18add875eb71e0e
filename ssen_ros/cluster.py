"""Clustering foreground embeddings into instances with HDBSCAN, paper §III-B.

Two methods, chosen by ``ClusterConfig.method``:

- ``exact``: the authors' call, ``hdbscan.HDBSCAN(min_cluster_size=200, allow_single_cluster=True)``
  on every embedding. Its cost grows as N^1.7 (FACTS §7: ~15 s at 100k on one core).
- ``fast``: HDBSCAN on a uniform random sample of ``sample_size`` embeddings, with
  ``min_cluster_size`` and ``min_samples`` scaled by the sampling fraction, then every embedding
  takes the cluster of its nearest sampled cluster member (KD-tree), or noise if none lies
  within ``assign_radius``. Trained embeddings are tight balls of radius ~delta_pull whose means
  are >= 2*delta_push apart (eqs. 2 and 4), so a few thousand samples already show every
  cluster of at least ``min_cluster_size`` points, and the assignment is near-linear in N.
  Finally clusters smaller than ``min_cluster_size`` become noise, as in ``exact``.

The ``hdbscan`` package is the reference implementation the authors used; scipy's cKDTree does
the nearest-neighbour assignment.
"""
from __future__ import annotations

import hdbscan
import numpy as np
from scipy.spatial import cKDTree

from ssen_ros.config import ClusterConfig


class EmbeddingClusterer:
    """Estimator-style clustering of embeddings: ``labels = EmbeddingClusterer(cfg).fit_predict(X)``.

    Labels are 0..K-1 with -1 for noise; clusters are numbered by decreasing size, so results
    are repeatable for a fixed seed.
    """

    def __init__(self, config: ClusterConfig = ClusterConfig()):
        if config.method not in ("fast", "exact"):
            raise ValueError(f"cluster.method must be 'fast' or 'exact', got {config.method!r}")
        if config.min_cluster_size < 2:
            raise ValueError(f"cluster.min_cluster_size must be >= 2, got {config.min_cluster_size}")
        self.config = config

    def fit_predict(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(embeddings, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"embeddings must be (N, d), got shape {x.shape}")
        n = len(x)
        cfg = self.config
        min_samples = cfg.min_samples or cfg.min_cluster_size
        if n < cfg.min_cluster_size:
            return np.full(n, -1, dtype=np.int64)
        if cfg.method == "exact" or n <= cfg.sample_size:
            labels = _hdbscan(x, cfg.min_cluster_size, min_samples)
        else:
            labels = self._sample_and_assign(x, min_samples)
        return _drop_small_and_renumber(labels, cfg.min_cluster_size)

    def _sample_and_assign(self, x: np.ndarray, min_samples: int) -> np.ndarray:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        sample = rng.choice(len(x), size=cfg.sample_size, replace=False)
        fraction = cfg.sample_size / len(x)
        sample_labels = _hdbscan(x[sample], max(5, round(cfg.min_cluster_size * fraction)),
                                 max(2, round(min_samples * fraction)))
        members = sample[sample_labels >= 0]
        labels = np.full(len(x), -1, dtype=np.int64)
        if len(members) == 0:
            return labels
        dist, nearest = cKDTree(x[members]).query(x, k=1, distance_upper_bound=cfg.assign_radius)
        found = np.isfinite(dist)
        labels[found] = sample_labels[sample_labels >= 0][nearest[found]]
        return labels


def _hdbscan(x: np.ndarray, min_cluster_size: int, min_samples: int) -> np.ndarray:
    model = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                            allow_single_cluster=True)
    return model.fit_predict(x).astype(np.int64)


def _drop_small_and_renumber(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Clusters under ``min_size`` become -1; the rest are renumbered 0.. by decreasing size."""
    valid = labels >= 0
    if not valid.any():
        return labels
    ids, counts = np.unique(labels[valid], return_counts=True)
    order = np.lexsort((ids, -counts))  # by size, ties by old id
    keep = counts[order] >= min_size
    remap = np.full(ids.max() + 1, -1, dtype=np.int64)
    remap[ids[order][keep]] = np.arange(keep.sum())
    out = np.full_like(labels, -1)
    out[valid] = remap[labels[valid]]
    return out
