"""Room layouts: determinism, no interpenetration, instance bookkeeping, clutter, the robot's path."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ssen_ros.classes import CLASS_NAMES, IGNORE_LABEL
from ssen_ros.synthetic.furniture import FURNITURE_DIR
from ssen_ros.synthetic.props import Supports, box_mesh, merge, plain, shift
from ssen_ros.synthetic.room import ROOM_TYPES, LayoutError, Placed, _Box, make_room

pytestmark = pytest.mark.skipif(not (FURNITURE_DIR / "BlendSwap-CC-0.sh3f").is_file(),
                                reason="Debian package sweethome3d-furniture not installed")

SEATED = {CLASS_NAMES.index("table"), CLASS_NAMES.index("desk")}
CHAIR = CLASS_NAMES.index("chair")


def test_box_overlap_touching_is_allowed_and_rotation_counts():
    a = _Box(np.array([0.0, 0.0]), np.array([1.0, 0.5]), 0.0, 0.0, 1.0)
    assert not a.overlaps(_Box(np.array([2.0, 0.0]), np.array([1.0, 0.5]), 0.0, 0.0, 1.0))  # touching
    assert a.overlaps(_Box(np.array([1.9, 0.0]), np.array([1.0, 0.5]), 0.0, 0.0, 1.0))
    assert not a.overlaps(_Box(np.array([1.9, 0.0]), np.array([1.0, 0.5]), 0.0, 1.0, 2.0))  # above
    # A square turned 45 degrees: its corner reaches 0.707 from its centre.
    turned = _Box(np.array([1.6, 0.0]), np.array([0.5, 0.5]), math.pi / 4, 0.0, 1.0)
    assert turned.overlaps(a)
    assert not _Box(np.array([1.75, 0.0]), np.array([0.5, 0.5]), math.pi / 4, 0.0, 1.0).overlaps(a)


@pytest.mark.parametrize("room_type", ROOM_TYPES)
def test_rooms_are_furnished_without_interpenetration(room_type):
    for seed in (11, 12):
        room = make_room(seed, room_type)
        inst = room.instances
        assert 5 <= len(inst) <= 40 or room_type == "bathroom" and len(inst) >= 3
        assert [o.instance for o in inst] == list(range(len(inst)))
        assert all(o.instance == -1 for o in room.objects if CLASS_NAMES[o.label] in ("wall", "floor"))
        boxes = [o.rectangle() for o in inst]
        for i, a in enumerate(inst):
            if CLASS_NAMES[a.label] not in ("door", "window"):   # those sit inside the wall
                corners = boxes[i].corners()
                assert corners.min() >= -1e-6
                assert (corners.max(axis=0) <= [room.width + 1e-6, room.depth + 1e-6]).all()
                assert boxes[i].z1 <= room.height + 1e-6
            for j in range(i + 1, len(inst)):
                if boxes[i].overlaps(boxes[j]):
                    pair = {a.label, inst[j].label}
                    # Only a chair pushed under a table or desk may share its footprint.
                    assert CHAIR in pair and pair & SEATED, (a.name, inst[j].name)


def test_same_seed_same_room_and_different_seeds_differ():
    a, b, c = make_room(5), make_room(5), make_room(6)
    assert [o.model_id for o in a.objects] == [o.model_id for o in b.objects]
    np.testing.assert_array_equal(np.array([o.position for o in a.objects]),
                                  np.array([o.position for o in b.objects]))
    np.testing.assert_array_equal(a.viewpoints, b.viewpoints)
    assert (a.room_type, a.width) != (c.room_type, c.width)


def test_conference_tables_get_rows_of_identical_chairs():
    room = make_room(3, "conference")
    chairs = [o for o in room.instances if o.label == CHAIR]
    assert len(chairs) >= 4
    # The chairs around the table are one model, seats tucked towards the table.
    models = [o.model_id for o in chairs]
    assert max(models.count(m) for m in set(models)) >= 4


def test_viewpoints_are_at_robot_height_in_free_space():
    room = make_room(8, "office", num_viewpoints=10)
    assert room.viewpoints.shape == (10, 3)
    assert (room.viewpoints[:, 2] >= 1.2).all() and (room.viewpoints[:, 2] <= 1.6).all()
    for o in room.objects:
        if o.position[2] > 1.0 or o.instance < 0 and o.label != IGNORE_LABEL:
            continue   # walls, floor, or above the robot
        box = o.rectangle()
        local = (room.viewpoints[:, :2] - box.center) @ box.axes().T
        assert not (np.abs(local) <= box.half).all(axis=1).any(), o.name


def test_unknown_room_type_is_refused():
    with pytest.raises(LayoutError, match="unknown room type 'garage'"):
        make_room(0, "garage")


def _shelf_unit() -> Supports:
    """Two side panels and boards at z = 0, 0.4 and 0.8 (each 2 cm thick), 0.8 x 0.3 m."""
    wood = plain((150, 100, 60))
    parts = [shift(box_mesh((0.02, 0.3, 0.82), wood), x=x) for x in (-0.39, 0.39)]
    parts += [shift(box_mesh((0.76, 0.3, 0.02), wood), z=z) for z in (0.0, 0.4, 0.8)]
    return Supports(merge(parts))


def test_supports_find_shelf_boards_and_keep_props_between_them():
    sup = _shelf_unit()
    tops = sorted(round(level.z, 3) for level in sup.levels)
    for board in (0.02, 0.42, 0.82):
        assert any(abs(z - board) < 0.005 for z in tops), tops
    middle = next(level for level in sup.levels if abs(level.z - 0.42) < 0.005)
    half = np.array([0.1, 0.1])
    assert sup.fits(middle, np.array([0.0, 0.0]), half, 0.0, 0.3)
    assert not sup.fits(middle, np.array([0.0, 0.0]), half, 0.0, 0.45)        # hits the top board
    assert not sup.fits(middle, np.array([0.0, 0.2]), half, 0.0, 0.1)         # hangs off the front
    assert not sup.fits(middle, np.array([0.33, 0.0]), half, 0.0, 0.1)        # in the side panel


def _world_samples(obj: Placed) -> np.ndarray:
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Supports(obj.mesh).points @ rot.T + obj.position


def _inside(points: np.ndarray, box: _Box, shrink: float) -> np.ndarray:
    local = (points[:, :2] - box.center) @ box.axes().T
    return (np.abs(local) < box.half - shrink).all(axis=1) & \
        (points[:, 2] > box.z0 + shrink) & (points[:, 2] < box.z1 - shrink)


@pytest.mark.parametrize("room_type", ["office", "bedroom", "kitchen", "living"])
def test_clutter_is_ignored_rests_on_a_surface_and_clears_the_furniture(room_type):
    room = make_room(31, room_type)
    props = [o for o in room.objects if o.label == IGNORE_LABEL]
    assert len(props) >= 5
    assert all(o.instance == -1 for o in props)
    assert any(o.position[2] == 0.0 for o in props) and any(o.position[2] > 0.1 for o in props)
    furniture = [(o, _world_samples(o)) for o in room.instances]
    for prop in props:
        box = prop.rectangle()
        for obj, pts in furniture:   # no furniture surface inside the prop's box
            assert not _inside(pts, box, 0.01).any(), (prop.name, obj.name)
        if prop.position[2] == 0.0:
            continue
        # Something's surface lies just under the middle of the prop's footprint.
        below = np.vstack([pts for _, pts in furniture])
        local = (below[:, :2] - box.center) @ box.axes().T
        under = (np.abs(local) < np.maximum(box.half * 0.8, 0.02)).all(axis=1) & \
            (np.abs(below[:, 2] - box.z0) < 0.015)
        assert under.any(), prop.name


def test_clutter_can_be_left_out_and_does_not_change_the_furniture():
    bare, full = make_room(40, "office", clutter=False), make_room(40, "office")
    assert not any(o.label == IGNORE_LABEL for o in bare.objects)
    assert [o.model_id for o in bare.instances] == [o.model_id for o in full.instances]
