"""Instance records: class vote, score, and boxes recovered from known shapes."""
import numpy as np
import pytest

from ssen_ros.instances import footprint_rectangle, make_instances


def box_points(centre, size, yaw, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    local = rng.uniform(-0.5, 0.5, (n, 3)) * size
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return local @ rot.T + centre


@pytest.mark.parametrize("yaw", [0.0, 0.3, -0.6, 0.78])
def test_oriented_box_recovers_yaw_and_size(yaw):
    pts = box_points(np.array([2.0, -1.0, 0.4]), np.array([1.2, 0.5, 0.8]), yaw)
    centre, got_yaw, size = footprint_rectangle(pts[:, :2])
    assert got_yaw == pytest.approx(yaw, abs=0.02)
    assert size == pytest.approx([1.2, 0.5], abs=0.03)
    assert centre == pytest.approx([2.0, -1.0], abs=0.02)


def test_yaw_is_canonical_for_a_box_turned_past_45_degrees():
    pts = box_points(np.zeros(3), np.array([1.2, 0.5, 0.8]), 1.2)  # same box as yaw 1.2 - pi/2
    _, yaw, size = footprint_rectangle(pts[:, :2])
    assert yaw == pytest.approx(1.2 - np.pi / 2, abs=0.02)
    assert size == pytest.approx([0.5, 1.2], abs=0.03)


def test_degenerate_footprints_do_not_fail():
    assert footprint_rectangle(np.array([[1.0, 2.0]]))[2].tolist() == [0.0, 0.0]
    line = np.stack([np.linspace(0, 1, 10), np.zeros(10)], 1)
    assert footprint_rectangle(line)[2] == pytest.approx([1.0, 0.0])


def test_records_take_majority_class_and_mean_probability():
    pts = np.concatenate([box_points(np.array([0, 0, 0.5]), np.ones(3), 0.0, n=100),
                          box_points(np.array([3, 0, 0.5]), np.ones(3), 0.0, n=50)])
    point_instance = np.repeat([0, 1], [100, 50])
    point_instance[:5] = -1  # noise points are in no instance
    voxel_instance = np.array([0, 0, 0, 1, -1])
    probs = np.array([[0.1, 0.0, 0.0, 0.0, 0.9],   # chair
                      [0.0, 0.0, 0.0, 0.0, 0.7],   # chair
                      [0.0, 0.0, 0.0, 0.0, 0.4],   # chair
                      [0.0, 0.0, 0.0, 0.8, 0.2],   # bed
                      [1.0, 0.0, 0.0, 0.0, 0.0]])  # background voxel
    probs = np.pad(probs, ((0, 0), (0, 15)))
    a, b = make_instances(pts, point_instance, voxel_instance, probs)
    assert (a.class_name, b.class_name) == ("chair", "bed")
    assert a.score == pytest.approx((0.9 + 0.7 + 0.4) / 3) and b.score == pytest.approx(0.8)
    assert (a.point_count, b.point_count) == (95, 50)
    assert b.centroid == pytest.approx(pts[100:].mean(0))
    assert b.aabb_size == pytest.approx(np.ptp(pts[100:], 0))


def test_score_is_halved_at_half_area():
    pts = np.zeros((5, 3))
    point_instance = np.array([0, 1, 1, 1, 1])
    voxel_instance = np.array([0, 1, 1, 1, 1])
    probs = np.pad(np.full((5, 1), 0.8), ((0, 0), (4, 15)))  # every voxel: chair, p = 0.8
    small, large = make_instances(pts, point_instance, voxel_instance, probs, voxel_area=0.25, half_area=0.25)
    assert small.score == pytest.approx(0.8 * 0.5)        # 1 voxel of 0.25 m^2
    assert large.score == pytest.approx(0.8 * 1.0 / 1.25)  # 4 voxels, 1 m^2
    plain = make_instances(pts, point_instance, voxel_instance, probs)
    assert [r.score for r in plain] == pytest.approx([0.8, 0.8])
