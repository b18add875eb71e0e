"""Clustering foreground embeddings into instances with HDBSCAN, paper §III-B.

Two methods, chosen by ``ClusterConfig.method``:

- ``exact``: the authors' call, ``hdbscan.HDBSCAN(min_cluster_size=200, allow_single_cluster=True)``
  on every embedding. Its cost grows faster than linearly in N (``python -m benchmarks cluster``).
- ``fast``: HDBSCAN on a uniform random sample of ``sample_size`` embeddings, with
  ``min_cluster_size`` and ``min_samples`` scaled by the sampling fraction, then every embedding
  takes the cluster of its nearest sampled cluster member (KD-tree), or stays unclaimed if none
  lies within ``assign_radius`` (sampled members with fewer than the scaled ``min_cluster_size``
  sampled members within that radius are strays and assign nothing). Trained embeddings are
  tight balls of radius ~delta_pull whose means are >= 2*delta_push apart (eqs. 2 and 4), so a
  sample shows every cluster that it hits a few times, and the assignment is near-linear in N. Instances too small to be hit often
  enough are far from every sampled cluster, so they stay unclaimed; up to ``MAX_ROUNDS`` - 1
  more rounds cluster a sample of the unclaimed embeddings the same way (with the scaling
  fraction of that remainder), unless a round finds nothing or clustered all that was left.
  Finally clusters smaller than ``min_cluster_size`` become noise, as in ``exact``.
  'fast' takes this path also when every embedding fits in one sample, so noise near a cluster
  is claimed the same way in small rooms as in large maps.
- ``fast`` also splits chained clusters (``split_distance``): HDBSCAN's excess-of-mass
  selection sometimes keeps two touching instances (two cabinets side by side) as one cluster
  although their embeddings form two groups. The loss pushes instance means 2*delta_push = 1.0
  apart (eq. 2) and pulls points within delta_pull = 0.1 of their mean (eq. 4), so each selected
  cluster is cut into its leaves in HDBSCAN's condensed tree, leaves whose means lie within
  ``split_distance`` of each other are joined again (single linkage: sub-modes of one instance),
  and what stays apart becomes separate clusters.
- ``fast`` builds HDBSCAN's spanning tree over the k-nearest-neighbour graph of the sample
  (``neighbours``; :func:`_knn_single_linkage`: one KD-tree query and scipy's minimum spanning
  tree), then hands it to the ``hdbscan`` package's own condensing and excess-of-mass
  selection. The tree is exact wherever the graph holds its edges (only links between far-apart
  groups can be missing), and cheaper than the package's Boruvka tree (``neighbours: 0``,
  compared in ``python -m benchmarks cluster``). The same neighbour lists decide most of the
  stray-member checks (:func:`_dense_members`) without a second KD-tree query.

Both methods then split each cluster into its spatially connected parts when given the voxels'
positions (``connect_distance``). The paper's networks see each voxel's coordinates (§IV,
f = 6), so embeddings of far-apart objects differ; ours see only height and colour, which do not
depend on the map's extent (``ssen_ros.features``), and two alike objects in different rooms
can get the same embedding and become one cluster. A cluster's voxels are joined when they lie
in the same or neighbouring cells of ``connect_distance`` metres (connected components over the
cells, as in the connected-component proposals of MTML, Lahoud et al. 2019), and parts under
``min_cluster_size`` become noise.

The ``hdbscan`` package is the reference implementation the authors used; scipy's cKDTree does
the nearest-neighbour queries.
"""
from __future__ import annotations

import hdbscan
import numpy as np
from hdbscan._hdbscan_linkage import label as single_linkage_label
from hdbscan.hdbscan_ import _tree_to_labels
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import cKDTree

from ssen_ros.config import ClusterConfig


MAX_ROUNDS = 2
"""'fast' clusters at most this many samples: the first, then one of what it left unclaimed
(a third round finds only instances too small to be hit by either sample, at the cost of another
HDBSCAN run)."""


class EmbeddingClusterer:
    """Estimator-style clustering of embeddings: ``labels = EmbeddingClusterer(cfg).fit_predict(X)``.

    Labels are 0..K-1 with -1 for noise; clusters are numbered by decreasing size, so results
    are repeatable for a fixed seed.
    """

    def __init__(self, config: ClusterConfig = ClusterConfig()):
        self.config = config  # ClusterConfig checks its own settings

    def fit_predict(self, embeddings: np.ndarray, positions: "np.ndarray | None" = None) -> np.ndarray:
        """Cluster labels of ``embeddings`` (N, d); with ``positions`` (N, 3, metres) each
        cluster is split into its spatially connected parts (module docstring)."""
        x = np.ascontiguousarray(embeddings, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"embeddings must be (N, d), got shape {x.shape}")
        if positions is not None and np.shape(positions) != (len(x), 3):
            raise ValueError(f"positions must be ({len(x)}, 3), got shape {np.shape(positions)}")
        n = len(x)
        cfg = self.config
        min_samples = cfg.min_samples or cfg.min_cluster_size
        if n < cfg.min_cluster_size:
            return np.full(n, -1, dtype=np.int64)
        if cfg.method == "exact":
            labels = _hdbscan(x, cfg.min_cluster_size, min_samples)
        else:
            labels = self._sample_and_assign(x, min_samples)
        if positions is not None and cfg.connect_distance > 0:
            labels = split_disconnected(labels, positions, cfg.connect_distance)
        return _drop_small_and_renumber(labels, cfg.min_cluster_size)

    def _sample_and_assign(self, x: np.ndarray, min_samples: int) -> np.ndarray:
        """Rounds of sample -> HDBSCAN -> assign, each on the embeddings no cluster claimed yet."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        labels = np.full(len(x), -1, dtype=np.int64)
        pending = np.arange(len(x))
        found = 0
        for round_ in range(MAX_ROUNDS):
            if len(pending) < cfg.min_cluster_size:
                break
            take = min(cfg.sample_size, len(pending))
            whole = take == len(pending)
            sample = pending[rng.choice(len(pending), size=take, replace=False)]
            fraction = take / len(pending)
            # Later rounds see what earlier ones left: missed small instances among true noise,
            # so a single cluster there is not allowed (it would sweep the noise together).
            smallest = max(5, round(cfg.min_cluster_size * fraction))
            xs, scaled_min_samples = x[sample], max(2, round(min_samples * fraction))
            knn = nearest_neighbours(xs, max(cfg.neighbours, scaled_min_samples)) if cfg.neighbours > 0 else None
            sample_labels = _hdbscan(xs, smallest, scaled_min_samples, allow_single=round_ == 0,
                                     split_distance=cfg.split_distance, knn=knn)
            members = _dense_members(xs, sample_labels, smallest, cfg.assign_radius, knn)
            if not members.any():
                break
            dist, nearest = cKDTree(x[sample[members]]).query(
                x[pending], k=1, distance_upper_bound=cfg.assign_radius, workers=-1)
            claimed = np.isfinite(dist)
            labels[pending[claimed]] = found + sample_labels[members][nearest[claimed]]
            found += int(sample_labels.max()) + 1
            pending = pending[~claimed]
            if whole:
                break
        return labels


def _dense_members(x: np.ndarray, labels: np.ndarray, smallest: int, radius: float,
                   knn: "tuple[np.ndarray, np.ndarray] | None" = None) -> np.ndarray:
    """Clustered samples with at least ``smallest`` clustered samples within ``radius``.

    A small instance hit by one or two samples is sometimes attached to a neighbouring cluster;
    such a stray member would hand the whole instance to that cluster in the assignment.
    Demoted, it leaves the instance unclaimed for the next round. ``knn`` (the samples'
    :func:`nearest_neighbours`) decides most samples without a new query: those with enough
    clustered neighbours within ``radius`` in their list, and those whose list already holds
    every sample within ``radius``.
    """
    clustered = labels >= 0
    dense, undecided = clustered.copy(), clustered.copy()
    if knn is not None and knn[0].shape[1] >= smallest:
        dist, idx = knn
        within = dist <= radius
        enough = (within & clustered[idx]).sum(1) >= smallest
        undecided &= ~enough & within[:, -1]
        dense &= enough | undecided
    if undecided.any():
        # the smallest-th nearest (self included) within radius <=> at least smallest within it;
        # faster than counting every neighbour (query_ball_point) inside large clusters
        kth, _ = cKDTree(x[clustered]).query(x[undecided], k=[smallest], workers=-1,
                                             distance_upper_bound=np.nextafter(radius, np.inf))
        dense[undecided] = np.isfinite(kth[:, 0])
    return dense


def _hdbscan(x: np.ndarray, min_cluster_size: int, min_samples: int, allow_single: bool = True,
             split_distance: float = 0.0, knn: "tuple[np.ndarray, np.ndarray] | None" = None) -> np.ndarray:
    """HDBSCAN labels (excess of mass); with ``split_distance`` > 0, chained clusters are split.

    With ``knn`` (:func:`nearest_neighbours` of ``x``) the mutual-reachability spanning tree is
    taken over that k-nearest-neighbour graph (:func:`_knn_single_linkage`); without, the
    ``hdbscan`` package builds its own (Boruvka KD-tree).
    """
    if knn is not None:
        tree = _knn_single_linkage(*knn, min_samples)
        labels, _, _, condensed, _ = _tree_to_labels(x, tree, min_cluster_size, "eom", allow_single)
    else:
        model = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                                allow_single_cluster=allow_single)
        labels = model.fit_predict(x)
        condensed = model.condensed_tree_.to_numpy()
    labels = labels.astype(np.int64)
    if split_distance > 0 and labels.max() >= 0:
        labels = _split_chained(x, labels, _leaf_labels(condensed, len(x)), split_distance)
    return labels


def nearest_neighbours(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices (N, k + 1) of each point's k nearest neighbours, itself first
    (k is capped at N - 1)."""
    return cKDTree(x).query(x, k=min(k, len(x) - 1) + 1, workers=-1)


def _knn_single_linkage(dist: np.ndarray, idx: np.ndarray, min_samples: int) -> np.ndarray:
    """HDBSCAN's single-linkage tree from the minimum spanning tree of the mutual-reachability
    graph restricted to the k-nearest-neighbour graph ``dist``, ``idx`` (the approach of GPU
    HDBSCANs such as cuML's).

    Mutual reachability is max(core_a, core_b, |a - b|), core = distance to the
    ``min_samples``-th neighbour (as in ``hdbscan``). An edge is missing only where both its
    ends have k nearer neighbours, so what the tree loses are links between groups that are
    far apart in the first place. Where the graph falls into several components, they are
    chained by edges longer than every other, so they meet only at the root of the hierarchy.
    With k >= N - 1 the tree is exact (test_cluster.py).
    """
    n, k = len(dist), dist.shape[1] - 1  # column 0: the point itself
    core = dist[:, min(min_samples, k)]
    rows = np.repeat(np.arange(n), k)
    cols = idx[:, 1:].ravel()
    weight = np.maximum(np.maximum(core[rows], core[cols]), dist[:, 1:].ravel())
    # + tiny: csgraph takes explicit zeros (duplicate embeddings) for missing edges
    graph = coo_matrix((weight + 1e-12, (rows, cols)), shape=(n, n)).tocsr()
    mst = minimum_spanning_tree(graph).tocoo()
    edges = np.column_stack([mst.row, mst.col, mst.data]).astype(np.float64)
    count, component = connected_components(mst, directed=False)
    # hdbscan's label() needs a spanning tree (N - 1 edges): handed a forest, it corrupts the heap
    if count > 1:
        first = np.unique(component, return_index=True)[1]
        longest = float(edges[:, 2].max(initial=0.0))
        bridges = np.column_stack([first[:-1], first[1:], np.full(count - 1, 2.0 * longest + 1.0)])
        edges = np.concatenate([edges, bridges])
    return single_linkage_label(edges[np.argsort(edges[:, 2], kind="stable")])


def _leaf_labels(tree: np.ndarray, n: int) -> np.ndarray:
    """Each point's leaf cluster in HDBSCAN's condensed tree (what 'leaf' selection would pick);
    -1 for points that left the tree at an inner cluster."""
    is_cluster = tree["child_size"] > 1
    inner = np.unique(tree["parent"][is_cluster])
    points = tree[~is_cluster]
    at_leaf = ~np.isin(points["parent"], inner)
    leaves = np.full(n, -1, dtype=np.int64)
    leaves[points["child"][at_leaf]] = points["parent"][at_leaf]
    return leaves


def _split_chained(x: np.ndarray, labels: np.ndarray, leaves: np.ndarray, distance: float) -> np.ndarray:
    """Split each cluster into groups of its leaves whose means chain within ``distance``;
    members outside every leaf join the group of their nearest leaf member."""
    out = labels.copy()
    next_id = int(labels.max()) + 1
    for k in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == k)
        in_leaf = leaves[members] >= 0
        ids, leaf_of = np.unique(leaves[members][in_leaf], return_inverse=True)
        if len(ids) < 2:
            continue
        means = np.stack([np.bincount(leaf_of, weights=col, minlength=len(ids))
                          for col in x[members][in_leaf].T], 1)
        means /= np.bincount(leaf_of, minlength=len(ids))[:, None]
        group_of_leaf = fcluster(linkage(means, "single"), distance, "distance") - 1
        if group_of_leaf.max() == 0:
            continue
        group = np.empty(len(members), dtype=np.int64)
        group[in_leaf] = group_of_leaf[leaf_of]
        if not in_leaf.all():
            _, nearest = cKDTree(x[members[in_leaf]]).query(x[members[~in_leaf]])
            group[~in_leaf] = group[in_leaf][nearest]
        out[members] = np.where(group == 0, k, next_id + group - 1)
        next_id += int(group_of_leaf.max())
    return out


def split_disconnected(labels: np.ndarray, positions: np.ndarray, cell: float) -> np.ndarray:
    """Each cluster of ``labels`` (-1: noise) cut into the connected components of its cells:
    ``positions`` fall into cubes of edge ``cell``, and cubes of one cluster that share a face,
    edge or corner are connected. Points closer than ``cell`` always stay together, points more
    than 2 * ``cell`` apart along an axis are joined only through others."""
    keep = labels >= 0
    if not keep.any():
        return labels
    cubes = np.floor(positions[keep] / cell).astype(np.int64)
    cubes -= cubes.min(0)
    keyed, inverse = _unique_rows(np.column_stack([labels[keep], cubes]))
    # Clusters side by side along x, far enough apart that no cube of one neighbours another's.
    spread = keyed[:, 1:].astype(np.float64)
    spread[:, 0] += keyed[:, 0] * (cubes[:, 0].max() + 3.0)
    pairs = cKDTree(spread).query_pairs(np.sqrt(3.0) + 1e-6, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(keyed),) * 2)
    _, part = connected_components(graph, directed=False)
    out = np.full_like(labels, -1)
    out[keep] = part[inverse]
    return out


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, axis=0, return_inverse=True)`` of non-negative int64 rows, through one
    packed int64 key per row where the columns' bits fit in 63 (as ``ssen_ros.voxel`` groups
    voxels): numpy's row-wise unique compares rows as structured records, several times slower."""
    bits = [max(int(c.max()), 1).bit_length() for c in rows.T]
    if sum(bits) > 63:
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
        return unique, inverse.reshape(-1)
    key = np.zeros(len(rows), dtype=np.int64)
    for column, b in zip(rows.T, bits):
        key <<= b
        key |= column
    key, inverse = np.unique(key, return_inverse=True)
    unique = np.empty((len(key), len(bits)), dtype=np.int64)
    for j in reversed(range(len(bits))):
        unique[:, j] = key & ((1 << bits[j]) - 1)
        key >>= bits[j]
    return unique, inverse.reshape(-1)


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
