"""Simulated scanning: even sampling, exact occlusion, labels, range noise, fusion artefacts,
determinism."""
from __future__ import annotations

import numpy as np
import pytest

from ssen_ros.classes import CLASS_NAMES
from ssen_ros.synthetic.furniture import Material, Mesh
from ssen_ros.synthetic.room import Placed, Room, _quads_mesh, box_mesh
from ssen_ros.synthetic.scan import sample_surface, scan_room

pytest.importorskip("embreex")

RED = Material("red", np.array([200, 0, 0], np.uint8))
GREY = Material("grey", np.array([128, 128, 128], np.uint8))


def _box(name, label, instance, size, xy, material=RED):
    return Placed(name, box_mesh(size, material), np.array([*xy, 0.0]), 0.0,
                  CLASS_NAMES.index(label), instance, np.array(size))


def _room(viewpoints) -> Room:
    """A 4 x 4 m floor; a tall cabinet at (2, 2) hides a low box at (3.2, 2) from x = 0.5."""
    floor = Placed("floor", _quads_mesh(np.array([[[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0]]], float), GREY),
                   np.zeros(3), 0.0, CLASS_NAMES.index("floor"), -1, np.array([4, 4, 0.0]))
    objects = [floor, _box("cabinet", "cabinet", 0, (0.6, 2.0, 2.0), (2.0, 2.0)),
               _box("hidden", "toilet", 1, (0.4, 0.4, 0.4), (3.2, 2.0))]
    return Room("test", 4.0, 4.0, 2.5, objects, np.asarray(viewpoints, float))


def test_sampling_is_even_on_quads_and_proportional_on_meshes():
    rng = np.random.default_rng(0)
    quad = _quads_mesh(np.array([[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]], float), GREY)
    pts, face, bary = sample_surface(quad, 0.02, rng)
    assert len(pts) == 2500                              # one per 2 cm cell
    cells = np.floor(pts[:, :2] / 0.02).astype(int)
    assert len(np.unique(cells, axis=0)) == 2500
    np.testing.assert_allclose(np.einsum("pk,pkj->pj", bary, quad.vertices[quad.faces[face]]), pts)
    tri = Mesh(np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0.0]]), np.array([[0, 1, 2]]), np.zeros(1, np.int32), [GREY])
    pts, _, _ = sample_surface(tri, 0.05, rng, per_cell=1.0)
    assert abs(len(pts) - 2.0 / 0.05 ** 2) < 5 * np.sqrt(800)
    assert (pts[:, 0] + pts[:, 1] <= 2 + 1e-9).all()
    glass = Mesh(tri.vertices, tri.faces, tri.face_material, [Material("glass", GREY.color, None, 0.2)])
    assert len(sample_surface(glass, 0.05, rng)[0]) == 0


def test_occluded_surfaces_are_not_in_the_map():
    scan = scan_room(_room([[0.5, 2.0, 1.4]]), seed=0, noise_scale=0.0)
    labels = {CLASS_NAMES[l] for l in np.unique(scan.semantic)}
    assert labels == {"floor", "cabinet"}                # the box behind the cabinet is hidden
    cab = scan.points[scan.semantic == CLASS_NAMES.index("cabinet")]
    assert cab[:, 0].max() < 1.71 + 1e-3                  # only the face towards the robot
    floor = scan.points[scan.semantic == CLASS_NAMES.index("floor")]
    behind = (floor[:, 0] > 2.4) & (np.abs(floor[:, 1] - 2.0) < 0.5)
    assert not behind.any()                              # the floor in the cabinet's shadow
    assert (np.linalg.norm(floor[:, :2] - [0.5, 2.0], axis=1) > 0.2).all()   # too close / too steep
    np.testing.assert_array_equal(scan.instance[scan.semantic == CLASS_NAMES.index("floor")], -1)
    assert (scan.instance[scan.semantic == CLASS_NAMES.index("cabinet")] == 0).all()


def test_a_second_viewpoint_reveals_the_hidden_box_and_colours_come_from_materials():
    scan = scan_room(_room([[0.5, 2.0, 1.4], [3.6, 3.6, 1.4]]), seed=0, noise_scale=0.0)
    box = scan.semantic == CLASS_NAMES.index("toilet")
    assert box.sum() > 200 and (scan.instance[box] == 1).all()
    red = scan.colors[box].astype(int)
    assert (red[:, 0] > 3 * red[:, 1] + 50).all()      # red material, shaded and noisy


def test_range_noise_and_determinism():
    room = _room([[0.5, 2.0, 1.4]])
    exact = scan_room(room, seed=1, noise_scale=0.0)
    noisy = scan_room(room, seed=1)
    again = scan_room(room, seed=1)
    np.testing.assert_array_equal(noisy.points, again.points)
    np.testing.assert_array_equal(noisy.colors, again.colors)
    floor = exact.semantic == CLASS_NAMES.index("floor")
    assert np.abs(exact.points[floor, 2]).max() < 1e-6
    z = noisy.points[noisy.semantic == CLASS_NAMES.index("floor"), 2]
    dz = np.abs(z - np.median(z))                      # one view: its drift moves all alike
    assert 5e-4 < np.median(dz) < 0.02                 # millimetres, growing with range


def _floor_near_each_view(scan):
    """Floor points near the first viewpoint (x < 1.5) and behind the cabinet, seen only from
    the second (x > 2.4, |y - 2| < 0.5)."""
    floor = scan.semantic == CLASS_NAMES.index("floor")
    x, y = scan.points[:, 0], scan.points[:, 1]
    return floor & (x < 1.5), floor & (x > 2.4) & (np.abs(y - 2.0) < 0.5)


def test_each_view_has_its_own_exposure_and_pose_drift():
    room = _room([[0.5, 2.0, 1.4], [3.6, 3.6, 1.4]])
    exposure, drift = [], []
    for seed in range(8):
        scan = scan_room(room, seed=seed)
        a, b = _floor_near_each_view(scan)
        assert a.sum() > 300 and b.sum() > 300
        grey = scan.colors.astype(float).mean(axis=1)
        exposure.append(abs(np.log(grey[a].mean() / grey[b].mean())))
        drift.append(abs(scan.points[a, 2].mean() - scan.points[b, 2].mean()))
    assert sum(e > 0.03 for e in exposure) >= 5, exposure     # one grey floor, two brightnesses
    assert sum(d > 0.001 for d in drift) >= 5, drift          # one flat floor, two heights
    exact = scan_room(room, seed=0, noise_scale=0.0)
    a, b = _floor_near_each_view(exact)
    assert exact.points[a | b, 2].max() == exact.points[a | b, 2].min() == 0.0


def _floor_cell_counts(scan, cell: float = 0.05) -> np.ndarray:
    """Floor points per ``cell`` square of the 4 x 4 m floor."""
    xy = scan.points[scan.semantic == CLASS_NAMES.index("floor"), :2]
    ij = np.clip(np.floor(xy / cell).astype(int), 0, int(4 / cell) - 1)
    counts = np.zeros((int(4 / cell),) * 2, int)
    np.add.at(counts, (ij[:, 0], ij[:, 1]), 1)
    return counts


def test_holes_drop_patches_and_two_views_double_some_points():
    one = _room([[0.5, 2.0, 1.4]])
    exact, noisy = scan_room(one, seed=3, noise_scale=0.0), scan_room(one, seed=3)
    assert len(noisy) < len(exact)
    counts = [_floor_cell_counts(s) for s in (exact, noisy)]
    full = np.ones_like(counts[0], bool)
    for dx in (-1, 0, 1):    # cells whose neighbours are full too: drift cannot empty them
        for dy in (-1, 0, 1):
            full &= np.roll(counts[0], (dx, dy), axis=(0, 1)) >= 4
    assert full.sum() > 500 and (counts[1][full] == 0).sum() >= 3     # holes, not thinning
    two = _room([[0.5, 2.0, 1.4], [3.6, 3.6, 1.4]])
    counts = [len(scan_room(two, seed=s)) - len(scan_room(two, seed=s, noise_scale=0.0)) for s in range(4)]
    assert max(counts) > 0, counts                           # repeats outnumber the holes somewhere
