"""Live maps: incremental runs equal full runs on the same tiles, and re-run only what changed."""
from dataclasses import replace

import numpy as np
import pytest

from ssen_ros.config import LiveConfig, SegmenterConfig
from ssen_ros.synthetic.generate import generate_scene
from ssen_ros.live import LiveSegmenter, tile_windows, window_hashes
from ssen_ros.segmenter import Segmenter

TILE = 1.5


@pytest.fixture(scope="module")
def segmenter():
    """The shipped weights, with small tile margins so that a small room makes several tiles."""
    return Segmenter(SegmenterConfig(device="cpu", tile_overlap=0.5))


@pytest.fixture(scope="module")
def room():
    scan = generate_scene(20000, spacing=0.06).scan
    return scan.points.astype(np.float32), scan.colors, scan.instance


def versions(points, colors, instance):
    """A room explored in two halves, then a loop closure that shifts its right half by 3 cm,
    then one object moved by 30 cm."""
    left = points[:, 0] < np.median(points[:, 0])
    shifted = points.copy()
    shifted[~left] += np.float32([0.03, 0.015, 0.0])
    moved = shifted.copy()
    moved[instance == np.unique(instance[instance >= 0])[0]] += np.float32([0.3, 0.0, 0.0])
    return [("left half", points[left], colors[left]), ("whole room", points, colors),
            ("right half shifted", shifted, colors), ("object moved", moved, colors)]


def same(a, b) -> bool:
    return (np.array_equal(a.semantic, b.semantic) and np.array_equal(a.instance, b.instance)
            and a.instances == b.instances)


def test_incremental_runs_equal_full_runs_and_rerun_only_changed_tiles(segmenter, room):
    # Every changed voxel counts, and no fallback: kept tiles are exactly those without change.
    config = LiveConfig(tile_size=TILE, changed_voxels=0, full_share=1.0)
    live = LiveSegmenter(segmenter, config)
    runs = []
    for name, points, colors in versions(*room):
        result = live(points, colors)
        assert same(result, LiveSegmenter(segmenter, config).full(points, colors)), name
        for inst in result.instances:  # the labelled cloud agrees with the object list
            assert (result.semantic[result.instance == inst.id] == inst.class_id).all(), name
        runs.append((name, set(live.changed_), set(live.tiles_), result))
    (_, first, all_first, _), (_, grown, all_grown, _), (_, shifted, _, _), (_, moved, all_moved, _) = runs
    assert first == all_first and grown < all_grown  # tiles far from the new half are kept
    assert all(x >= 1 for x, _ in grown - all_first)  # the new half's tiles run (x >= median)
    # Tiles whose window (core plus the 0.5 m margin) ends left of the shifted half stay.
    median = np.median(room[0][:, 0])
    left_only = {c for c in all_grown if (c[0] + 1) * TILE + 0.5 < median}
    assert left_only and shifted and not shifted & left_only
    assert 0 < len(moved) < len(all_moved) / 2


def test_a_few_voxels_of_noise_rerun_nothing_and_a_fallback_reruns_everything(segmenter, room):
    points, colors, _ = room
    live = LiveSegmenter(segmenter, LiveConfig(tile_size=TILE))
    before = live(points, colors)
    stray = points.min(0) + np.float32([[0.3, 0.3, 1.0], [0.4, 0.5, 2.0], [0.5, 0.4, 0.5]])
    noisy = live(np.concatenate([points, stray]), np.concatenate([colors, np.full((3, 3), 128, np.uint8)]))
    assert live.changed_ == [] and not live.full_
    assert np.array_equal(noisy.instance[:len(points)], before.instance)
    assert np.array_equal(noisy.semantic[:len(points)], before.semantic)
    assert (noisy.semantic[len(points):] == -1).all()  # unlabelled until their tiles re-run
    live.config = replace(live.config, changed_voxels=0, full_share=1.0)
    live(np.concatenate([points, stray]), np.concatenate([colors, np.full((3, 3), 128, np.uint8)]))
    assert 0 < len(live.changed_) < len(live.tiles_) and not live.full_
    live.config = replace(live.config, full_share=0.0)
    live(points, colors)  # the stray voxels are gone: their tiles changed, and any change falls back
    assert live.full_ and set(live.changed_) == set(live.tiles_)


def test_points_the_segmenter_drops_are_unlabelled_and_change_nothing_else(segmenter, room):
    points, colors, _ = room
    config = LiveConfig(tile_size=TILE)
    clean = LiveSegmenter(segmenter, config)(points, colors)
    bad = np.float32([[np.nan, 0.0, 0.0], [1e9, 0.0, 0.0]])  # not finite; beyond coordinate_limit
    live = LiveSegmenter(segmenter, config)
    dirty = live(np.concatenate([bad, points]), np.concatenate([np.zeros((2, 3), np.uint8), colors]))
    assert (dirty.semantic[:2] == -1).all() and (dirty.instance[:2] == -1).all()
    assert np.array_equal(dirty.semantic[2:], clean.semantic)
    assert np.array_equal(dirty.instance[2:], clean.instance)
    empty = live(bad, np.zeros((2, 3), np.uint8))
    assert (empty.semantic == -1).all() and (empty.instance == -1).all() and empty.instances == []


def test_window_hashes_follow_the_set_of_voxels_not_their_order():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 1 << 62, 1000)
    voxels = np.concatenate([np.arange(400), rng.permutation(400), np.arange(400, 1000)])
    starts = np.array([0, 400, 800, 1400])
    first, shuffled, other = window_hashes(keys, voxels, starts)
    assert first == shuffled != other
    moved = keys.copy()
    moved[[3, 4]] += [1, -1]  # one voxel a step forwards, one back: the key sum stays
    assert window_hashes(moved, voxels, starts)[0] != first


def test_a_reordered_map_reruns_nothing_and_keeps_every_label(segmenter, room):
    points, colors, _ = room
    config = LiveConfig(tile_size=TILE, changed_voxels=0)
    live = LiveSegmenter(segmenter, config)
    before = live(points, colors)
    order = np.random.default_rng(1).permutation(len(points))
    after = live(points[order], colors[order])
    assert live.changed_ == []
    assert np.array_equal(after.semantic, before.semantic[order])
    assert np.array_equal(after.instance, before.instance[order])


def test_each_voxel_has_one_core_tile_and_windows_reach_the_margin():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-3.3, 5.1, (4000, 2))
    win = tile_windows(xy, tile_size=2.0, overlap=0.5)
    cells = np.floor(xy / 2.0).astype(np.int64)
    assert np.array_equal(win.tiles[win.core], cells)
    for t, (ix, iy) in enumerate(win.tiles):
        inside = np.zeros(len(xy), dtype=bool)
        inside[win.window(t)] = True
        lo, hi = np.array([ix, iy]) * 2.0 - 0.5, np.array([ix + 1, iy + 1]) * 2.0 + 0.5
        near = ((xy >= lo + 1e-9) & (xy < hi - 1e-9)).all(1)
        far = ((xy < lo - 1e-9) | (xy >= hi + 1e-9)).any(1)
        assert inside[near].all() and not inside[far].any()
        assert len(win.window(t)) == inside.sum()  # no voxel listed twice


def test_change_margin_keeps_a_neighbour_whose_outer_margin_alone_changed(segmenter, room):
    points, colors, _ = room
    live = LiveSegmenter(segmenter, LiveConfig(tile_size=TILE, changed_voxels=0, full_share=1.0))
    live(points, colors)
    # A tile whose left neighbour exists; a new box 0.35 m inside its left edge lies in the
    # neighbour's 0.5 m margin but beyond 0.2 m of the neighbour's core.
    cx, cy = next(c for c in sorted(live.tiles_) if (c[0] - 1, c[1]) in live.tiles_)
    box = np.random.default_rng(0).uniform(-0.05, 0.05, (300, 3)) + [cx * TILE + 0.35, cy * TILE + 0.75, 1.0]
    grown = (np.concatenate([points, box.astype(np.float32)]),
             np.concatenate([colors, np.full((300, 3), 90, np.uint8)]))
    runs = {}
    for margin in (1.0, 0.2):
        live = LiveSegmenter(segmenter, replace(live.config, change_margin=margin))
        live(points, colors)
        live(*grown)
        runs[margin] = set(live.changed_)
    assert runs[1.0] == {(cx, cy), (cx - 1, cy)} and runs[0.2] == {(cx, cy)}


def test_windows_found_per_voxel_column_equal_those_found_per_voxel():
    rng = np.random.default_rng(1)
    columns = rng.uniform(-3.3, 5.1, (500, 2))
    heights = rng.integers(1, 9, len(columns))
    xy = np.repeat(columns, heights, axis=0)  # consecutive voxels of a column share their xy
    runs = np.append(0, np.cumsum(heights)[:-1])
    a, b = tile_windows(xy, 2.0, 0.5), tile_windows(xy, 2.0, 0.5, runs)
    assert np.array_equal(a.tiles, b.tiles) and np.array_equal(a.core, b.core)
    assert np.array_equal(a.starts, b.starts)
    assert all(np.array_equal(np.sort(a.window(t)), np.sort(b.window(t))) for t in range(len(a.tiles)))


def test_the_map_processor_in_live_mode_outputs_the_whole_map_with_stable_ids(room):
    pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from ssen_ros.config import NodeConfig
    from ssen_ros.io import Cloud
    from ssen_ros.io.pointcloud2 import cloud_from_pointcloud2
    from ssen_ros.ros.convert import cloud_message
    from ssen_ros.ros.processing import MapProcessor

    points, colors, _ = room
    config = NodeConfig(segmenter=SegmenterConfig(device="cpu", tile_overlap=0.5),
                        live=LiveConfig(enabled=True, tile_size=TILE, full_share=1.0))
    processor = MapProcessor(config)
    left = points[:, 0] < np.median(points[:, 0])
    raw = [serialize_message(cloud_message(Cloud(p, c), Header(frame_id="map")))
           for p, c in ((points[left], colors[left]), (points, colors))]
    processor(raw[0])
    grown = processor(raw[1])
    assert 0 < len(processor.live.changed_) < len(processor.live.tiles_)
    full = LiveSegmenter(processor.segmenter, config.live).full(points, colors)
    cloud = cloud_from_pointcloud2(deserialize_message(grown.cloud, PointCloud2))
    assert len(cloud) == len(points) and len(grown.instances) == len(full.instances)
    assert np.array_equal(cloud.fields["label"], full.semantic)
    again = processor(raw[1])
    assert processor.live.changed_ == []
    assert [(i.id, i.point_count) for i in again.instances] == [(i.id, i.point_count) for i in grown.instances]
    processor.reconfigure(config)  # new settings: kept tiles are stale, the next run is full
    processor(raw[1])
    assert processor.live.full_


def test_the_processor_freezes_what_is_alive_after_its_first_map_with_outputs(room, monkeypatch):
    """Full collections later skip the modules and networks (``gc.freeze``), once, and not
    before a map gave outputs (the libraries imported on first use are not loaded before)."""
    pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")
    import gc

    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from ssen_ros.config import NodeConfig
    from ssen_ros.io import Cloud
    from ssen_ros.ros.convert import cloud_message
    from ssen_ros.ros.processing import MapError, MapProcessor

    points, colors, _ = room
    processor = MapProcessor(NodeConfig(segmenter=SegmenterConfig(device="cpu")))
    empty, good = (serialize_message(cloud_message(Cloud(p, c), Header(frame_id="map")))
                   for p, c in ((points[:0], colors[:0]), (points, colors)))
    freezes, real_freeze = [], gc.freeze

    def counted_freeze() -> None:
        freezes.append(1)
        real_freeze()

    monkeypatch.setattr(gc, "freeze", counted_freeze)
    gc.unfreeze()
    try:
        with pytest.raises(MapError, match="no points"):
            processor(empty)
        assert freezes == [] and gc.get_freeze_count() == 0
        processor(good)
        assert len(freezes) == 1 and gc.get_freeze_count() > 0
        processor(good)
        assert len(freezes) == 1  # not frozen again
    finally:
        gc.unfreeze()
