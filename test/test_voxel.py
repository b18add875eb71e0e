"""voxelize/devoxelize: every point lands in the voxel that contains it, features are means."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from ssen_ros.voxel import column_bounds, devoxelize, voxelize


def _check(points, features, voxel_size):
    vox = voxelize(points, features, voxel_size)
    expected_index = np.floor(points.astype(np.float64) / voxel_size).astype(np.int64)
    # each point's voxel is the one that contains it
    np.testing.assert_array_equal(vox.coords[vox.inverse] + vox.origin, expected_index)
    # voxels are unique, counts and means agree with a direct per-voxel computation
    assert len(np.unique(vox.coords, axis=0)) == len(vox)
    np.testing.assert_array_equal(vox.counts, np.bincount(vox.inverse, minlength=len(vox)))
    for v in range(len(vox)):
        np.testing.assert_allclose(vox.features[v], features[vox.inverse == v].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert vox.coords.dtype == np.int32 and vox.coords.min(initial=0) >= 0
    return vox


coordinate = st.floats(-50, 50, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(points=arrays(np.float64, st.tuples(st.integers(1, 200), st.just(3)), elements=coordinate),
       voxel_size=st.sampled_from([0.02, 0.05, 0.1, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_random_clouds(points, voxel_size, seed):
    features = np.random.default_rng(seed).normal(size=(len(points), 4)).astype(np.float32)
    _check(points, features, voxel_size)


@settings(max_examples=30, deadline=None)
@given(cells=arrays(np.int64, st.tuples(st.integers(1, 300), st.just(3)), elements=st.integers(-3, 3)),
       seed=st.integers(0, 2**32 - 1))
def test_many_points_per_voxel(cells, seed):
    rng = np.random.default_rng(seed)
    points = (cells + rng.uniform(0.01, 0.99, cells.shape)) * 0.02
    vox = _check(points, rng.normal(size=(len(points), 3)), 0.02)
    assert len(vox) == len(np.unique(cells, axis=0))


def test_features_are_means_exactly():
    points = np.array([[0.001, 0.001, 0.001], [0.019, 0.0, 0.0], [0.021, 0.0, 0.0]])
    vox = voxelize(points, np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 30.0]]))
    np.testing.assert_array_equal(vox.coords, [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(vox.features, [[2.0, 15.0], [5.0, 30.0]])
    np.testing.assert_array_equal(vox.inverse, [0, 0, 1])
    np.testing.assert_array_equal(vox.counts, [2, 1])


def test_empty_input():
    vox = voxelize(np.zeros((0, 3)), np.zeros((0, 3), np.float32))
    assert vox.coords.shape == (0, 3) and vox.features.shape == (0, 3) and vox.inverse.shape == (0,)
    assert devoxelize(np.zeros(0), vox.inverse).shape == (0,)


def test_single_point_and_no_features():
    vox = voxelize(np.array([[1.234, -5.6, 7.0]]))
    assert len(vox) == 1 and vox.features.shape == (1, 0)
    # voxel (61, -280, 350); the origin is rounded down to a multiple of 16
    np.testing.assert_array_equal(vox.origin, [48, -288, 336])
    np.testing.assert_array_equal(vox.coords, [[13, 8, 14]])


def test_negative_coordinates_floor_not_truncate():
    vox = voxelize(np.array([[-0.001, -0.019, -0.021]]), voxel_size=0.02)
    np.testing.assert_array_equal(vox.coords[0] + vox.origin, [-1, -1, -2])


@pytest.mark.parametrize("offset", [10_000.0, -10_000.0])
def test_far_from_origin(offset):
    """A robot 10 km from its map origin: the voxels are those of the same cloud near 0, shifted."""
    rng = np.random.default_rng(0)
    local = rng.uniform(0, 4, (5000, 3))
    local = np.floor(local / 0.02) * 0.02 + 0.005  # keep points away from voxel faces
    far = voxelize(local + offset, local, 0.02)
    near = voxelize(local, local, 0.02)
    np.testing.assert_array_equal(far.coords, near.coords)
    np.testing.assert_array_equal(far.inverse, near.inverse)
    np.testing.assert_array_equal(far.origin - near.origin, [offset / 0.02] * 3)
    np.testing.assert_allclose(far.centers() - offset, near.centers(), atol=1e-6)


def test_devoxelize_spreads_labels_back():
    points = np.array([[0.0, 0, 0], [0.5, 0, 0], [0.001, 0, 0]])
    vox = voxelize(points)
    labels = np.arange(len(vox)) * 10  # voxels sorted by x: the point at 0.5 m is the second
    assert devoxelize(labels, vox.inverse).tolist() == [0, 10, 0]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="not finite"):
        voxelize(np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="voxel_size"):
        voxelize(np.zeros((1, 3)), voxel_size=0)
    with pytest.raises(ValueError, match="shape"):
        voxelize(np.zeros((2, 3)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="spans"):
        voxelize(np.array([[0.0, 0, 0], [50_000.0, 0, 0]]))


@pytest.mark.parametrize("n", [1, 1023, 1024, 3 * 1024, 3 * 1024 + 5])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_column_bounds_are_each_columns_min_and_max(n, layout):
    rng = np.random.default_rng(n)
    wide = rng.normal(0, 10, (n, 6)).astype(np.float32)
    a = np.ascontiguousarray(wide[:, :3]) if layout == "contiguous" else wide[:, ::2]
    a[rng.integers(0, n), 1] = 1e6  # an extreme anywhere, the leftover rows included
    low, high = column_bounds(a)
    np.testing.assert_array_equal(low, a.min(0))
    np.testing.assert_array_equal(high, a.max(0))
    a[n // 2, 2] = np.nan  # a non-finite value shows in its column's bounds, as voxelize needs
    assert np.isnan(column_bounds(a)[0][2]) and np.isnan(column_bounds(a)[1][2])
