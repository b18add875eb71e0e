"""Tiling of large maps: tiled segmentation equals untiled, objects cut by borders stay whole."""
import warnings

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ssen_ros import checkpoint
from ssen_ros.classes import CLASS_NAMES
from ssen_ros.config import ClusterConfig, SegmenterConfig
from ssen_ros.synthetic.room import make_room
from ssen_ros.synthetic.scan import scan_room
from ssen_ros.instances import instance_record
from ssen_ros.segmentation import Segmentation
from ssen_ros.segmenter import Segmenter
from ssen_ros.tiling import TileBudgetError, segment_tiled, tile_grid, tile_instances
from ssen_ros.voxel import voxelize

BACKGROUND = [CLASS_NAMES.index("wall"), CLASS_NAMES.index("floor")]


@pytest.fixture(scope="module")
def city():
    """Three synthetic test rooms side by side along x: points, colours, classes, instances."""
    parts, x0, next_id = [], 0.0, 0
    # Without clutter: the stand-in leaves it out anyway, and these three rooms are the ones the
    # exactness below was established on. (With clutter, room 20001's layout shifts and one door
    # has a piece whose link to the rest runs outside its tile's window: it stays a separate piece.)
    for seed in (20000, 20001, 20002):
        scan = scan_room(make_room(seed, clutter=False), seed, spacing=0.06)
        pts = scan.points.astype(np.float64)
        pts[:, 0] += x0 - pts[:, 0].min()
        x0 = pts[:, 0].max() + 0.3
        inst = np.where(scan.instance >= 0, scan.instance + next_id, -1)
        next_id = inst.max() + 1
        parts.append((pts, scan.colors, scan.semantic, inst))
    return [np.concatenate(p) for p in zip(*parts)]


def euclidean_segmenter(semantic: np.ndarray, radius: float = 0.1, min_points: int = 1):
    """A stand-in for the networks that is exactly local: true classes, and instances are the
    connected components (links shorter than ``radius``) of the non-background points it is
    given. ``rows`` (passed where colours go) are the points' indices in the whole map."""
    def segment(points: np.ndarray, rows: np.ndarray) -> Segmentation:
        sem = semantic[rows[:, 0]]
        fg = np.flatnonzero(~np.isin(sem, BACKGROUND) & (sem >= 0))   # not clutter (-1) either
        pairs = cKDTree(points[fg]).query_pairs(radius, output_type="ndarray")
        from scipy.sparse import coo_matrix
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(fg),) * 2)
        comp = connected_components(graph, directed=False)[1]
        instance = np.full(len(points), -1, dtype=np.int64)
        records = []
        for k in np.unique(comp):
            members = fg[comp == k]
            if len(members) < min_points:
                continue
            instance[members] = len(records)
            cls = int(np.bincount(sem[members]).argmax())
            records.append(instance_record(len(records), points[members], cls, 0.5))
        return Segmentation(sem, instance, records)
    return segment


def matching(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    """For every instance of labelling ``a``: its best IoU with an instance of ``b``."""
    out = {}
    for i in np.unique(a[a >= 0]):
        mask = a == i
        hit = np.bincount(b[mask & (b >= 0)])
        j = int(hit.argmax()) if hit.size else -1
        out[int(i)] = 0.0 if j < 0 else float((mask & (b == j)).sum() / (mask | (b == j)).sum())
    return out


def test_tiled_equals_untiled_and_cut_objects_stay_whole(city):
    points, _, semantic, _ = city
    rows = np.arange(len(points))[:, None]
    segment = euclidean_segmenter(semantic)
    whole = segment(points, rows)
    grid = tile_grid(points[:, :2], tile_size=2.5, overlap=0.5)
    assert grid is not None and len(grid) >= 6
    tiled = segment_tiled(segment, points, rows, grid)
    assert 6 <= tiled.num_tiles <= len(grid)  # empty tiles are skipped
    assert np.array_equal(tiled.semantic, whole.semantic)
    core = grid.core_index(points[:, :2])
    cut = {i for i in np.unique(whole.instance[whole.instance >= 0])
           if len(np.unique(core[whole.instance == i])) > 1}
    assert len(cut) >= 5, "the grid should cut several objects"
    ious = matching(whole.instance, tiled.instance)
    assert all(ious[i] == 1.0 for i in ious if i not in cut)   # untouched objects: identical
    assert all(ious[i] == 1.0 for i in cut)                     # cut objects: one instance again
    assert len(tiled.instances) == len(whole.instances)
    by_id = {r.id: r for r in tiled.instances}
    for r in whole.instances:
        t = by_id[int(np.bincount(tiled.instance[whole.instance == r.id]).argmax())]
        assert (t.class_id, t.point_count) == (r.class_id, r.point_count)
        assert np.allclose(t.aabb_size, r.aabb_size) and np.allclose(t.centroid, r.centroid)


def test_sliver_left_unclustered_by_its_core_tile_joins_the_object(city):
    points, _, semantic, _ = city
    rows = np.arange(len(points))[:, None]
    # Tiles drop clusters under 150 points, as HDBSCAN drops clusters under min_cluster_size.
    segment = euclidean_segmenter(semantic, min_points=150)
    whole = segment(points, rows)
    grid = tile_grid(points[:, :2], tile_size=2.5, overlap=0.5)
    tiled = segment_tiled(segment, points, rows, grid, background=BACKGROUND)
    core = grid.core_index(points[:, :2])
    slivers = 0
    for i in np.unique(whole.instance[whole.instance >= 0]):
        tiles, counts = np.unique(core[whole.instance == i], return_counts=True)
        slivers += int((counts < 150).any() and len(tiles) > 1)
    assert slivers >= 1, "some object should have a small piece across a border"
    assert all(iou == 1.0 for iou in matching(whole.instance, tiled.instance).values())


def test_object_classified_differently_by_two_tiles_is_one_instance_of_the_majority_class():
    # A bar from x = 0.5 to 4 across the border at x = 2; the right tile calls it a sofa.
    x = np.linspace(0.5, 4.0, 701)
    points = np.stack([x, np.full_like(x, 0.5), np.full_like(x, 0.4)], 1)
    points = np.concatenate([points, [[0.0, 0.0, 0.0], [4.0, 10.0, 0.0]]])  # extent markers
    rows = np.arange(len(points))[:, None]
    table, sofa = CLASS_NAMES.index("table"), CLASS_NAMES.index("sofa")

    def segment(pts: np.ndarray, r: np.ndarray) -> Segmentation:
        bar = r[:, 0] < len(x)
        cls = table if pts[:, 0].min() < 1 else sofa
        score = 0.8 if cls == table else 0.6
        records = [instance_record(0, pts[bar], cls, score)] if bar.any() else []
        return Segmentation(np.where(bar, cls, 1), np.where(bar, 0, -1), records)

    grid = tile_grid(points[:, :2], tile_size=2.0, overlap=0.5)
    assert grid.shape == (2, 5)
    out = segment_tiled(segment, points, rows, grid)
    assert len(out.instances) == 1 and (out.instance[:len(x)] == 0).all()
    rec = out.instances[0]
    assert rec.class_name == "sofa" and rec.point_count == len(x)   # 2 m of the bar vs 1.5 m
    assert rec.score == pytest.approx((0.8 * (x < 2).sum() + 0.6 * (x >= 2).sum()) / len(x))
    assert (out.semantic[:len(x)] == np.where(x < 2, table, sofa)).all()


def test_grid_only_when_the_map_exceeds_one_tile():
    xy = np.random.default_rng(0).uniform(0, 9.9, (1000, 2))
    assert tile_grid(xy, 8.0, 1.0) is None      # fits 8 m + 2 x 1 m
    assert tile_grid(xy, 0.0, 1.0) is None      # tiling off
    grid = tile_grid(np.concatenate([xy, [[0.0, 1.0], [25.0, 1.0]]]), 8.0, 1.0)
    assert grid.shape == (4, 1) and grid.edge[0] == pytest.approx(25.0 / 4)
    core = grid.core_index(np.array([[0.0, 0.0], [25.0, 9.9], [np.nan, 1.0]]))
    assert core.tolist() == [0, 3, -1]
    with pytest.raises(ValueError, match="tile_size"):
        tile_grid(xy, -1.0, 1.0)


@pytest.mark.parametrize("far", [8e19, 3.4e38, np.finfo(np.float64).max])
def test_grid_over_the_tile_budget_is_refused_with_the_numbers_never_overflowed(far):
    xy = np.array([[0.0, 0.0], [far, 1.0], [-far, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from an overflowing cast
        with pytest.raises(TileBudgetError, match=r"tiles of segmenter.tile_size=8.0 m, over "
                                                  r"segmenter.max_tiles=4000"):
            tile_grid(xy, 8.0, 1.0)
    square = np.random.default_rng(1).uniform(0, 6, (500, 2))  # 0.05 m tiles: 120 x 120
    with pytest.raises(TileBudgetError, match=r"needs 120 x 120 tiles"):
        tile_grid(square, 0.05, 0.0, max_tiles=10_000)
    assert len(tile_grid(square, 0.05, 0.0, max_tiles=14_400)) == 14_400


@pytest.fixture
def one_thread():
    """One torch thread: two OpenMP threads on a busy 2-core machine run up to 100x slower."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_segmenter_tiles_wide_maps_automatically(tmp_path, city, one_thread):
    spec = checkpoint.ModelSpec(arch="Res16UNet14S", voxel_size=0.1)
    weights = tmp_path / "w.pt"
    checkpoint.save(weights, spec, *checkpoint.build_pair(spec, backend="torch"))
    points, colors, _, _ = city

    def run(tile_size: float) -> Segmentation:
        cfg = SegmenterConfig(weights=str(weights), backend="torch", device="cpu", tile_size=tile_size,
                              tile_overlap=0.5, cluster=ClusterConfig(min_cluster_size=400))
        return Segmenter(cfg)(points, colors)

    tiled, whole = run(6.0), run(0.0)
    assert whole.num_tiles == 1 and tiled.num_tiles >= 2
    assert {"semantic", "cluster", "stitch", "total"} <= set(tiled.timings)
    assert (tiled.semantic >= 0).all()
    assert [r.id for r in tiled.instances] == list(range(len(tiled.instances)))
    for r in tiled.instances:
        assert r.point_count == int((tiled.instance == r.id).sum())
    # Far from any tile border the networks see the same neighbourhood, so most labels agree.
    assert (tiled.semantic == whole.semantic).mean() > 0.8


def test_instances_counted_per_voxel_equal_those_counted_per_point():
    """``tile_instances`` with the map's voxels (node per voxel, as the live path calls it) gives
    the per-point call's instances and records, scores up to rounding."""
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 4, (20000, 3)).astype(np.float32)
    vox = voxelize(points, None, 0.25)
    node = rng.integers(-1, 40, len(vox))                     # tile instances per voxel
    component = rng.integers(0, 25, 40)                       # after the border merges
    classes, scores = rng.integers(0, len(CLASS_NAMES), 40), rng.uniform(0.1, 1.0, 40)
    by_point = tile_instances(points, node[vox.inverse], component, classes, scores, 30, {})
    by_voxel = tile_instances(points, node, component, classes, scores, 30, {}, vox)
    assert np.array_equal(by_voxel[0], by_point[0]) and len(by_point[1]) > 5
    assert len(by_voxel[1]) == len(by_point[1])
    for a, b in zip(by_voxel[1], by_point[1]):
        assert (a.id, a.class_id, a.point_count, a.aabb_size) == (b.id, b.class_id, b.point_count, b.aabb_size)
        assert a.score == pytest.approx(b.score, rel=1e-12)
