"""Clustering: 'fast' agrees with 'exact' HDBSCAN on embeddings shaped like trained SSEN output."""
from dataclasses import replace

import hdbscan
import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from sklearn.metrics import adjusted_rand_score

from ssen_ros import cluster
from ssen_ros.cluster import EmbeddingClusterer
from ssen_ros.config import ClusterConfig


def ssen_like_embeddings(sizes, seed=0, d=8, spread=0.05, outliers=0.03):
    """Balls of radius ~delta_pull around means >= 1.0 apart (eqs. 2, 4), plus scattered outliers."""
    rng = np.random.default_rng(seed)
    means = []
    while len(means) < len(sizes):
        m = rng.uniform(-3, 3, d)
        if all(np.linalg.norm(m - o) >= 1.0 for o in means):
            means.append(m)
    x = np.concatenate([m + rng.normal(0, spread, (n, d)) for m, n in zip(means, sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    k = int(outliers * len(x))
    idx = rng.choice(len(x), k, replace=False)
    x[idx] = rng.uniform(-3.5, 3.5, (k, d))
    y[idx] = -1
    return x, y


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_matches_exact_and_truth(seed):
    sizes = [200, 350, 800, 1500, 3000, 6000, 12000]
    x, truth = ssen_like_embeddings(sizes, seed=seed)
    exact = EmbeddingClusterer(ClusterConfig(method="exact", min_cluster_size=100, min_samples=10)).fit_predict(x)
    fast = EmbeddingClusterer(ClusterConfig(method="fast", min_cluster_size=100, min_samples=10,
                                            sample_size=3000)).fit_predict(x)
    inliers = truth >= 0
    assert fast.max() + 1 == len(sizes) == exact.max() + 1
    assert adjusted_rand_score(truth[inliers], fast[inliers]) > 0.99
    assert adjusted_rand_score(exact[inliers], fast[inliers]) > 0.99


def test_instances_missed_by_the_first_sample_are_found_in_the_leftovers(monkeypatch):
    sizes = [20_000] * 5 + [120] * 4  # 1,000 samples hit each small instance about 1.2 times
    x, truth = ssen_like_embeddings(sizes, seed=5, outliers=0.0)
    cfg = ClusterConfig(method="fast", min_cluster_size=100, min_samples=10, sample_size=1000, seed=1)
    two_rounds = EmbeddingClusterer(cfg).fit_predict(x)
    monkeypatch.setattr(cluster, "MAX_ROUNDS", 1)
    one_round = EmbeddingClusterer(cfg).fit_predict(x)
    assert one_round.max() + 1 <= 6 and two_rounds.max() + 1 == len(sizes)
    assert adjusted_rand_score(truth, two_rounds) > 0.99
    for found in (one_round, two_rounds):  # a stray sample never hands a small instance to a big one
        pairs = np.unique(np.stack([found, truth])[:, found >= 0], axis=1)
        assert len(pairs[0]) == len(np.unique(pairs[0]))


def test_labels_are_numbered_by_size_and_repeatable():
    x, _ = ssen_like_embeddings([300, 2000, 900], outliers=0.0)
    cfg = ClusterConfig(min_cluster_size=100, sample_size=1000, seed=3)
    a = EmbeddingClusterer(cfg).fit_predict(x)
    assert np.array_equal(a, EmbeddingClusterer(cfg).fit_predict(x))
    counts = np.bincount(a[a >= 0])
    assert list(counts) == sorted(counts, reverse=True) and counts[0] == 2000


def test_far_points_are_noise_and_small_clusters_dropped():
    x, truth = ssen_like_embeddings([3000, 3000], outliers=0.0, seed=4)
    far = np.full((5, 8), 50.0)
    labels = EmbeddingClusterer(ClusterConfig(min_cluster_size=100, sample_size=1000)).fit_predict(
        np.concatenate([x, far]))
    assert (labels[-5:] == -1).all()
    assert EmbeddingClusterer(ClusterConfig(min_cluster_size=100)).fit_predict(x[:50]).tolist() == [-1] * 50


def test_bad_settings_and_shapes_are_named():
    with pytest.raises(ValueError, match="method must be one of"):
        EmbeddingClusterer(ClusterConfig(method="kmeans"))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        EmbeddingClusterer().fit_predict(np.zeros(10))


def bridged_pair(bridge_points: int, gap: float, seed: int = 0, d: int = 8, n: int = 1500):
    """Two instances' embeddings ``gap`` apart, the space between them filled by a bridge of
    embeddings (voxels where two touching objects meet), as HDBSCAN sees touching cabinets."""
    rng = np.random.default_rng(seed)
    a, b = np.zeros(d), np.r_[gap, np.zeros(d - 1)]
    bridge = a + np.linspace(0.1, 0.9, bridge_points)[:, None] * (b - a) + rng.normal(0, 0.03, (bridge_points, d))
    return np.concatenate([a + rng.normal(0, 0.05, (n, d)), b + rng.normal(0, 0.05, (n, d)), bridge])


@pytest.mark.parametrize("bridge_points", [50, 200])
def test_chained_instances_are_split_at_split_distance(bridge_points):
    x = bridged_pair(bridge_points, gap=1.0)
    cfg = ClusterConfig(min_cluster_size=100, min_samples=10, split_distance=0.0)
    chained = EmbeddingClusterer(cfg).fit_predict(x)
    assert chained.max() == 0  # excess of mass keeps the pair as one cluster
    split = EmbeddingClusterer(replace(cfg, split_distance=0.7)).fit_predict(x)
    first, second = split[:1500], split[1500:3000]
    assert split.max() == 1 and len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]
    assert (split[3000:] >= 0).all()  # bridge embeddings join one side or the other


def test_sub_modes_of_one_instance_closer_than_split_distance_stay_together():
    x = bridged_pair(0, gap=0.2)
    labels = EmbeddingClusterer(ClusterConfig(min_cluster_size=100, min_samples=10)).fit_predict(x)
    assert labels.max() == 0 and (labels == 0).mean() > 0.99


@pytest.mark.parametrize("min_samples", [1, 5, 10])
def test_knn_tree_over_every_neighbour_is_hdbscans_exact_tree(min_samples):
    """With the whole graph, the k-nearest-neighbour spanning tree is the exact one: the labels
    equal the hdbscan package's exact ('generic') algorithm, noise included."""
    x, _ = ssen_like_embeddings([150, 100, 60], seed=2, outliers=0.1)
    exact = hdbscan.HDBSCAN(min_cluster_size=20, min_samples=min_samples, allow_single_cluster=True,
                            algorithm="generic").fit_predict(x)
    knn = cluster._hdbscan(x, 20, min_samples, knn=cluster.nearest_neighbours(x, len(x)))
    assert np.array_equal(exact == -1, knn == -1)
    assert adjusted_rand_score(exact, knn) == 1.0 and exact.max() == 2


def test_knn_tree_with_disconnected_neighbour_graph_keeps_groups_apart():
    """Far-apart instances share no neighbour edge at k = 3; the chained components still come
    out as one cluster each."""
    x, truth = ssen_like_embeddings([300, 300, 300, 300], seed=4, outliers=0.0)
    _, nearest = cKDTree(x).query(x, k=4)
    graph = coo_matrix((np.ones(3 * len(x)), (np.repeat(np.arange(len(x)), 3), nearest[:, 1:].ravel())))
    assert connected_components(graph, directed=False)[0] == 4  # one component per instance
    labels = cluster._hdbscan(x, 20, 3, allow_single=False, knn=cluster.nearest_neighbours(x, 3))
    assert adjusted_rand_score(truth, labels) == 1.0


@pytest.mark.parametrize("k", [3, 12, 40])
def test_dense_members_decided_from_the_neighbour_lists_match_a_fresh_query(k):
    """Each sample's neighbour list decides it, or leaves it to the KD-tree query when the list
    lies within the radius but holds unclustered samples (the mixed ball); same result."""
    x, truth = ssen_like_embeddings([400, 300, 60, 15], seed=5, outliers=0.2)
    labels = np.where(truth >= 0, truth, np.arange(len(x)) % 4)  # outliers clustered as strays
    labels[(truth == 1) & (np.arange(len(x)) % 2 == 0)] = -1  # half of one ball unclustered
    knn = cluster.nearest_neighbours(x, k)
    for smallest in (2, 10, k + 1):
        queried = cluster._dense_members(x, labels, smallest, 0.3)
        assert 0 < queried.sum() < len(x)
        assert np.array_equal(cluster._dense_members(x, labels, smallest, 0.3, knn), queried)


def two_alike_objects(gap: float, seed: int = 0):
    """One embedding ball (the same object twice), its points in two 0.5 m boxes ``gap`` apart
    along x, 600 points each."""
    rng = np.random.default_rng(seed)
    x, _ = ssen_like_embeddings([1200], seed=seed, outliers=0.0)
    boxes = rng.uniform(0.0, 0.5, (1200, 3))
    boxes[600:, 0] += 0.5 + gap
    return x, boxes


def clusters_of(labels: np.ndarray) -> set:
    return set(labels[labels >= 0].tolist())


def test_one_embedding_cluster_in_two_places_becomes_two_instances():
    x, positions = two_alike_objects(gap=1.0)
    cfg = ClusterConfig(min_cluster_size=100, min_samples=10, sample_size=3000, connect_distance=0.0)
    assert len(clusters_of(EmbeddingClusterer(cfg).fit_predict(x, positions))) == 1  # 0: never split
    assert len(clusters_of(EmbeddingClusterer(cfg).fit_predict(x))) == 1
    labels = EmbeddingClusterer(ClusterConfig(min_cluster_size=100, min_samples=10,
                                              sample_size=3000)).fit_predict(x, positions)  # default
    first, second = clusters_of(labels[:600]), clusters_of(labels[600:])
    assert len(first) == 1 and len(second) == 1 and first != second
    assert (labels >= 0).mean() > 0.5


def test_parts_closer_than_connect_distance_stay_one_instance_and_small_parts_are_noise():
    x, positions = two_alike_objects(gap=0.2)
    cfg = ClusterConfig(min_cluster_size=100, min_samples=10, sample_size=3000, connect_distance=0.25)
    assert len(np.unique(EmbeddingClusterer(cfg).fit_predict(x, positions))) == 1
    positions[:50] += [10.0, 0.0, 0.0]  # a 50-point part far away: under min_cluster_size
    labels = EmbeddingClusterer(cfg).fit_predict(x, positions)
    assert (labels[:50] == -1).all() and len(np.unique(labels[50:])) == 1 and labels[50] == 0


def test_split_disconnected_joins_cubes_that_touch_at_a_corner_and_keeps_clusters_apart():
    # Two clusters interleaved in space: the split works within each cluster only.
    positions = np.array([[0.05, 0.05, 0.05], [0.15, 0.15, 0.15], [0.05, 0.05, 0.05],
                          [0.45, 0.05, 0.05], [0.95, 0.95, 0.95], [0.35, 0.0, 0.0]])
    labels = np.array([0, 0, 1, 1, 1, -1])
    out = cluster.split_disconnected(labels, positions, cell=0.1)
    assert out[0] == out[1]  # neighbouring cubes (corner)
    assert len({out[2], out[3], out[4]}) == 3  # cubes 4 and 9 apart: three parts
    assert out[0] not in {out[2], out[3], out[4]} and out[5] == -1


def test_positions_must_match_the_embeddings():
    x, positions = two_alike_objects(gap=1.0)
    with pytest.raises(ValueError, match=r"positions must be \(1200, 3\)"):
        EmbeddingClusterer(ClusterConfig(connect_distance=0.25)).fit_predict(x, positions[:10])


@pytest.mark.parametrize("high", [5, 2**40])  # packed into one key / too wide: numpy's row unique
def test_unique_rows_equal_numpys(high):
    rows = np.random.default_rng(0).integers(0, high, (1000, 4))
    unique, inverse = cluster._unique_rows(rows)
    expected, expected_inverse = np.unique(rows, axis=0, return_inverse=True)
    assert np.array_equal(unique, expected) and np.array_equal(inverse, expected_inverse.reshape(-1))
