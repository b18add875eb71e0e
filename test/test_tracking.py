"""Stable ids (ssen_ros.ros.tracking): same room, moved objects, reordering, classes, new/lost."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssen_ros.instances import Instance
from ssen_ros.ros.tracking import (OWNER_BITS, IdTracker, cell_keys, code_owners, dilate,
                                   instance_cells, map_ids, overlap_counts, relabel, tolerant_iou)


def box_surface(center, size, rng, spacing=0.02):
    """Points on the six faces of an axis-aligned box, about one per spacing^2."""
    center, size = np.asarray(center, float), np.asarray(size, float)
    area = 2 * (size[0] * size[1] + size[1] * size[2] + size[0] * size[2])
    p = rng.uniform(-0.5, 0.5, (int(area / spacing**2), 3))
    face = rng.integers(0, 3, len(p))
    p[np.arange(len(p)), face] = rng.choice([-0.5, 0.5], len(p))
    return center + p * size


def record(inst_id, class_id):
    zero = (0.0, 0.0, 0.0)
    return Instance(inst_id, class_id, "x", 0.9, 1, zero, zero, zero, zero, 0.0, zero)


# A small room: (class, centre, size) of each object; two chairs side by side 10 cm apart.
OBJECTS = [(4, (1.0, 1.0, 0.45), (0.5, 0.5, 0.9)), (4, (1.6, 1.0, 0.45), (0.5, 0.5, 0.9)),
           (6, (3.0, 2.0, 0.4), (1.2, 0.8, 0.8)), (5, (0.5, 3.0, 0.4), (2.0, 0.9, 0.8))]


def scene(objects=OBJECTS, order=None, seed=0, floor=True):
    """Points, per-point segmenter ids and records; ``order[k]`` is the segmenter's id of object k."""
    rng = np.random.default_rng(seed)
    order = list(range(len(objects))) if order is None else order
    parts, labels, records = [], [], []
    for k, (cls, c, s) in enumerate(objects):
        p = box_surface(c, s, rng)
        parts.append(p)
        labels.append(np.full(len(p), order[k]))
        records.append(record(order[k], cls))
    if floor:
        parts.append(np.c_[rng.uniform(0, 4, (5000, 2)), np.zeros(5000)])
        labels.append(np.full(5000, -1))
    return np.concatenate(parts), np.concatenate(labels), sorted(records, key=lambda r: r.id)


def ids_by_object(tracker, objects=OBJECTS, order=None, seed=0):
    points, labels, records = scene(objects, order, seed)
    ids = tracker.update(points, labels, records)
    order = list(range(len(objects))) if order is None else order
    return [ids[order[k]] for k in range(len(objects))]


def test_first_run_numbers_from_zero_and_same_room_keeps_ids():
    tracker = IdTracker()
    first = ids_by_object(tracker)
    assert sorted(first) == [0, 1, 2, 3]
    assert ids_by_object(tracker, seed=1) == first  # a rescan: other points, same objects


def test_object_moved_5cm_keeps_its_id_and_so_do_the_others():
    tracker = IdTracker()
    first = ids_by_object(tracker)
    moved = list(OBJECTS)
    cls, (x, y, z), size = moved[0]
    moved[0] = (cls, (x + 0.05, y, z), size)  # toward its neighbour chair
    assert ids_by_object(tracker, moved, seed=1) == first
    # and a SLAM correction that shifts the whole map by 5 cm diagonally
    shifted = [(c, tuple(np.add(p, (0.05, -0.05, 0.0))), s) for c, p, s in OBJECTS]
    assert ids_by_object(tracker, shifted, seed=2) == first


def test_ids_follow_geometry_not_the_segmenters_numbering():
    tracker = IdTracker()
    first = ids_by_object(tracker)
    assert ids_by_object(tracker, order=[3, 1, 0, 2], seed=1) == first


def test_new_lost_far_moved_and_reclassified_objects():
    tracker = IdTracker()
    first = ids_by_object(tracker)
    objects = list(OBJECTS[:3]) + [(9, (3.0, 0.5, 1.0), (1.0, 0.4, 2.0))]  # sofa gone, bookshelf new
    objects[1] = (objects[1][0], (2.5, 3.2, 0.45), objects[1][2])  # second chair moved 2 m
    objects[2] = (12, *objects[2][1:])  # the table is now called a desk
    second = ids_by_object(tracker, objects, seed=1)
    assert second[0] == first[0]
    assert len(set(second[1:])) == 3 and not set(second[1:]) & set(first)
    assert second[1:] == [4, 5, 6]  # fresh ids continue the sequence


def test_unchanged_instances_named_by_the_caller_keep_their_ids_and_the_rest_are_matched():
    moved = list(OBJECTS)
    cls, (x, y, z), size = moved[2]
    moved[2] = (cls, (x + 0.05, y, z), size)  # the table moved; the others are the same points
    order = [1, 0, 2, 3]  # this run's segmenter ids of the objects
    points, labels, records = scene(OBJECTS)
    moved_points, moved_labels, moved_records = scene(moved, order)
    moved_points[moved_labels != order[2]] = points[labels != 2]  # unchanged objects: same points
    full, hinted = IdTracker(), IdTracker()
    for tracker in (full, hinted):
        tracker.update(points, labels, records)
    expected = full.update(moved_points, moved_labels, moved_records)
    # per record (ids 0..3 of this run): the last run's id of the object with the same points
    same = [order.index(r.id) if r.id != order[2] else -1 for r in moved_records]
    assert hinted.update(moved_points, moved_labels, moved_records, same) == expected
    # the next run matches against the kept cells as it would against freshly computed ones
    assert hinted.update(points, labels, records) == full.update(points, labels, records)


def test_a_hint_naming_another_class_or_an_instance_twice_is_not_followed():
    tracker = IdTracker()
    points, labels, records = scene()
    first = tracker.update(points, labels, records)
    renamed = [record(r.id, 9 if r.id == 0 else r.class_id) for r in records]
    # instance 0 (now another class) and instance 1 both claim the last run's instance 1
    ids = tracker.update(points, labels, renamed, same=[1, 1, 2, 3])
    assert ids[1] == first[1] and ids[0] not in first.values()
    assert [ids[2], ids[3]] == [first[2], first[3]]


def test_threshold_decides_a_large_move():
    objects = [(4, (1.0, 1.0, 0.45), (0.5, 0.5, 0.9))]
    moved = [(4, (1.2, 1.0, 0.45), (0.5, 0.5, 0.9))]
    for min_iou, kept in ((0.1, True), (0.9, False)):
        tracker = IdTracker(min_iou=min_iou)
        first = ids_by_object(tracker, objects)
        assert (ids_by_object(tracker, moved, seed=1) == first) is kept


def test_empty_runs_and_dropped_records():
    tracker = IdTracker()
    points, labels, records = scene()
    assert tracker.update(points, np.full(len(points), -1), []) == {}
    # a record missing for some labelled points: those points are ignored, not an error
    ids = tracker.update(points, labels, records[:2])
    assert sorted(ids) == [records[0].id, records[1].id]
    assert tracker.update(np.zeros((0, 3)), np.zeros(0, dtype=int), []) == {}


def test_relabel_copies_records_with_stable_ids_and_map_ids_maps_points():
    records = [record(0, 4), record(1, 4), record(2, 6)]
    out = relabel(records, {0: 10, 1: 7, 2: 3})
    assert [r.id for r in out] == [10, 7, 3] and [r.id for r in records] == [0, 1, 2]
    assert map_ids(np.array([-1, 0, 2, 2, 1, 5]), {0: 10, 1: 7, 2: 3}).tolist() == [-1, 10, 3, 3, 7, -1]
    assert map_ids(np.zeros(0, dtype=int), {}).shape == (0,)


def test_cell_keys_distinguish_neighbours_and_negative_coordinates():
    pts = np.array([[0.05, 0.05, 0.05], [0.15, 0.05, 0.05], [-0.05, 0.05, 0.05],
                    [0.05, -0.05, 0.05], [0.05, 0.05, -0.05], [0.09, 0.01, 0.0]])
    keys = cell_keys(pts, 0.1)
    assert len(set(keys[:5].tolist())) == 5 and keys[5] == keys[0]
    # far from the origin (UTM-like coordinates) cells are still told apart
    far = cell_keys(pts + [500_000.0, 4_000_000.0, 0.0], 0.1)
    assert len(set(far[:5].tolist())) == 5 and far[5] == far[0]
    with pytest.raises(ValueError, match="cell must be > 0"):
        IdTracker(cell=0)


def test_tolerant_iou_survives_half_cell_moves_and_separates_neighbours():
    """The numbers the module docstring quotes: two chairs 10 cm apart, the pair moved 5 cm."""
    rng = np.random.default_rng(3)
    chairs = [box_surface(c, s, rng) for _, c, s in OBJECTS[:2]]
    points = np.concatenate(chairs)
    labels = np.repeat([0, 1], [len(c) for c in chairs])
    before = instance_cells(points, labels, 0.1)
    after = instance_cells(points + [0.05, -0.05, 0.0], labels, 0.1)
    iou = tolerant_iou(after, 2, before, 2)
    assert iou[0, 0] > 0.9 and iou[1, 1] > 0.9
    assert iou[0, 1] < 0.3 and iou[1, 0] < 0.3  # below the default min_iou
    plain = overlap_counts(after, before, 2, 2)[0, 0]
    cells = (code_owners(after) == 0).sum(), (code_owners(before) == 0).sum()  # chair 0
    assert plain / (cells[0] + cells[1] - plain) < 0.3  # without the tolerance
    np.testing.assert_allclose(np.diag(tolerant_iou(before, 2, before, 2)), 1.0)


def test_dilate_is_the_3x3x3_neighbourhood_per_instance():
    rng = np.random.default_rng(4)
    points = rng.uniform(-0.3, 0.3, (40, 3))
    labels = rng.integers(0, 3, 40)
    expected = set()
    for p, owner in zip(points, labels):
        for d in np.ndindex(3, 3, 3):
            centre = (np.floor(p / 0.1) + np.subtract(d, 1) + 0.5) * 0.1
            expected.add(int(cell_keys(centre[None], 0.1)[0] << OWNER_BITS | owner))
    grown = dilate(instance_cells(points, labels, 0.1))
    assert set(grown.tolist()) == expected and len(grown) == len(expected)
    assert (np.diff(grown) > 0).all()  # sorted and distinct, as overlap_counts needs


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), max_size=30),
       st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2)), max_size=30))
def test_overlap_counts_match_set_intersections(a, b):
    a, b = sorted(set(a)), sorted(set(b))
    codes_a = np.array([(k << OWNER_BITS) | o for k, o in a], dtype=np.int64)
    codes_b = np.array([(k << OWNER_BITS) | o for k, o in b], dtype=np.int64)
    counts = overlap_counts(codes_a, codes_b, 4, 3)
    for i in range(4):
        for j in range(3):
            expected = len({k for k, o in a if o == i} & {k for k, o in b if o == j})
            assert counts[i, j] == expected
