"""Large maps in overlapping xy tiles: bounded memory for any map size (no paper equation).

SSEN (paper §III) segments one room at a time; a building map of millions of points would need
the networks' activations for all its voxels at once. :func:`segment_tiled` cuts the xy plane
into a grid of square *cores* (edge at most ``tile_size``, the grid stretched to the map's
extent so no sliver tiles remain) and segments each core together with a *margin* of
``tile_overlap`` metres on every side, one tile after the other, so peak memory is that of one
tile. Every point lies in exactly one core.

What happens at tile borders:

- **Labels.** A point takes its semantic label and instance from the tile whose core holds it:
  that tile saw at least ``tile_overlap`` metres of context around it. Where that tile put a
  foreground point in no instance (e.g. the sliver of an object it cut off was too small to
  cluster), the point joins the instance that a neighbouring tile found for it.
- **Objects cut by a border** are seen, whole or in part, by both tiles. Two tile instances
  are merged into one when they hold the same points where both tiles looked: their IoU over
  the points that both tiles segmented (the 2 x ``tile_overlap`` wide band along the border)
  is at least ``MERGE_IOU``. Merges are transitive, so an object spanning several tiles stays
  one instance. The class is not required to agree: the grouping is what the two tiles share,
  and a cut object's class vote is least sure in the tile that sees less of it, so the merged
  instance takes the class of most of its points, the point-weighted mean of its pieces'
  scores, and boxes computed from its final points.
- A tile instance whose points all went to other tiles' cores (a fragment the tile saw only in
  its margin) and that matched nothing disappears.

Smaller tiles gave better instances on multi-room maps (``SegmenterConfig.tile_size``); at the
default 4 m cores rooms are cut, and the merge above joins their objects again. The 1 m margin
exceeds the 0.8 m cells of the UNets' coarsest level at 5 cm voxels (``python -m benchmarks
pipeline`` measures a tiled map's time and memory).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from ssen_ros.classes import NUM_CLASSES
from ssen_ros.config import SegmenterConfig
from ssen_ros.instances import instance_record
from ssen_ros.segmentation import Segmentation
from ssen_ros.voxel import Voxels, column_bounds

MERGE_IOU = 0.5
"""Two tile instances are the same object when their IoU over the points both tiles segmented
is at least this."""

SegmentFn = Callable[[np.ndarray, Optional[np.ndarray]], Segmentation]


@dataclass(frozen=True)
class TileGrid:
    """A grid of ``shape`` (nx, ny) square-ish xy cores of edge ``edge`` from ``origin``,
    each read with a margin of ``overlap`` metres."""

    origin: np.ndarray
    edge: np.ndarray
    shape: tuple[int, int]
    overlap: float

    def __len__(self) -> int:
        return self.shape[0] * self.shape[1]

    def core_index(self, xy: np.ndarray) -> np.ndarray:
        """Flat index (ix * ny + iy) of the core holding each point; points outside the grid's
        extent go to the nearest core; non-finite points get -1."""
        cell = np.floor((xy - self.origin) / self.edge)
        finite = np.isfinite(cell).all(1)
        cell = np.clip(np.nan_to_num(cell), 0, np.array(self.shape) - 1).astype(np.int64)
        return np.where(finite, cell[:, 0] * self.shape[1] + cell[:, 1], -1)

    def window(self, xy: np.ndarray, tile: int) -> np.ndarray:
        """Boolean mask of the points within tile ``tile``'s core plus its margin."""
        ix, iy = divmod(tile, self.shape[1])
        lo = self.origin + self.edge * np.array([ix, iy]) - self.overlap
        hi = lo + self.edge + 2 * self.overlap
        # The outer tiles reach to infinity, like core_index's clipping.
        lo = np.where(np.array([ix, iy]) == 0, -np.inf, lo)
        hi = np.where(np.array([ix, iy]) == np.array(self.shape) - 1, np.inf, hi)
        return ((xy >= lo) & (xy < hi)).all(1)


class TileBudgetError(ValueError):
    """The cloud needs more tiles than the budget allows; the message gives the numbers."""


def tile_grid(xy: np.ndarray, tile_size: float, overlap: float,
              max_tiles: int = SegmenterConfig.max_tiles) -> Optional[TileGrid]:
    """The tiles for points ``xy`` (N, 2), or None when the cloud needs no tiling: ``tile_size``
    is 0, or its extent fits one tile plus both margins on both axes. Raises
    ``TileBudgetError`` when the grid would hold more than ``max_tiles`` tiles; the count is
    computed in floating point, so no extent can overflow it."""
    if tile_size < 0 or overlap < 0:
        raise ValueError(f"tile_size and tile_overlap must be >= 0, got {tile_size} and {overlap}")
    if tile_size == 0:
        return None
    finite = np.isfinite(xy[:, 0]) & np.isfinite(xy[:, 1])
    if not finite.all():
        xy = xy[finite]
    if len(xy) == 0:
        return None
    lo, hi = (b.astype(np.float64) for b in column_bounds(xy))
    with np.errstate(over="ignore"):  # an infinite extent is refused below
        extent = hi - lo
    if (extent <= tile_size + 2 * overlap).all():
        return None
    counts = np.where(extent <= tile_size + 2 * overlap, 1.0, np.ceil(extent / tile_size))
    if not counts.prod() <= max_tiles:  # also catches inf
        raise TileBudgetError(
            f"xy extent {extent[0]:.4g} x {extent[1]:.4g} m needs {counts[0]:.4g} x {counts[1]:.4g} "
            f"tiles of segmenter.tile_size={tile_size} m, over segmenter.max_tiles={max_tiles}")
    counts = counts.astype(np.int64)
    edge = np.maximum(extent / counts, 1e-9)
    return TileGrid(lo, edge, (int(counts[0]), int(counts[1])), float(overlap))


def segment_tiled(segment: SegmentFn, points: np.ndarray, colors: Optional[np.ndarray],
                  grid: TileGrid, background: Sequence[int] = (), min_instance_points: int = 1,
                  progress: bool = False) -> Segmentation:
    """Run ``segment(points, colors)`` on every tile of ``grid`` and stitch the results (see the
    module docstring); ``background`` are the class ids that are never instances.

    Timings are summed over tiles, plus 'stitch' and 'total'; voxel counts are summed over
    tiles (margins counted in each tile that reads them)."""
    t_start = time.perf_counter()
    n = len(points)
    xy = np.asarray(points[:, :2], dtype=np.float64)
    core = grid.core_index(xy)
    semantic = np.full(n, -1, dtype=np.int64)
    node = np.full(n, -1, dtype=np.int64)  # tile instance ("node") of each point's core view
    node_class: list[int] = []
    node_score: list[float] = []
    node_tile: list[int] = []
    margin_idx, margin_node, margin_tile = [], [], []
    timings: dict[str, float] = {}
    num_voxels = num_foreground = 0
    tiles = np.unique(core[core >= 0]).tolist()
    for t in tqdm(tiles, desc="tiles", unit="tile", disable=not progress):
        idx = np.flatnonzero(grid.window(xy, t))
        result = segment(points[idx], None if colors is None else colors[idx])
        for stage, seconds in result.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        num_voxels += result.num_voxels
        num_foreground += result.num_foreground_voxels
        top = max([int(result.instance.max(initial=-1))] + [r.id for r in result.instances])
        local_to_node = np.full(top + 2, -1, dtype=np.int64)
        for record in result.instances:
            local_to_node[record.id] = len(node_class)
            node_class.append(record.class_id)
            node_score.append(record.score)
            node_tile.append(t)
        tile_node = local_to_node[result.instance]  # instance -1 reads the last entry, -1
        in_core = core[idx] == t
        semantic[idx[in_core]] = result.semantic[in_core]
        node[idx[in_core]] = tile_node[in_core]
        margin_idx.append(idx[~in_core])
        margin_node.append(tile_node[~in_core])
        margin_tile.append(np.full(int((~in_core).sum()), t, dtype=np.int64))
    t_stitch = time.perf_counter()
    classes = np.asarray(node_class, dtype=np.int64)
    m_idx, m_node, m_tile = (np.concatenate(v) if v else np.zeros(0, np.int64)
                             for v in (margin_idx, margin_node, margin_tile))
    component = join_tiles(semantic, node, core, m_idx, m_node, m_tile,
                           np.asarray(node_tile, np.int64), len(grid), background)
    instance, records, _ = tile_instances(points, node, component, classes,
                                          np.asarray(node_score, dtype=np.float64), min_instance_points)
    timings["stitch"] = time.perf_counter() - t_stitch
    timings["total"] = time.perf_counter() - t_start
    return Segmentation(semantic, instance, records, timings, num_voxels, num_foreground,
                        num_tiles=len(tiles))


def join_tiles(semantic: np.ndarray, node: np.ndarray, core: np.ndarray, margin_idx: np.ndarray,
               margin_node: np.ndarray, margin_tile: np.ndarray, node_tile: np.ndarray,
               num_tiles: int, background: Sequence[int]) -> np.ndarray:
    """Component of every tile instance ("node") after the border merges, and the rescue of
    foreground items that their core tile left unclustered (``node`` is updated in place).

    Items are points or voxels: ``semantic``, ``node`` and ``core`` (tile index) are their core
    views; ``margin_idx``, ``margin_node`` and ``margin_tile`` list their views from other tiles;
    ``node_tile`` is each node's tile."""
    component = _merge(node[margin_idx], core[margin_idx], margin_node, margin_tile, node_tile,
                       len(node_tile), num_tiles)
    # A foreground item its core tile left unclustered joins a neighbour's instance.
    rescue = (node[margin_idx] < 0) & (margin_node >= 0)
    rescue[rescue] &= ~np.isin(semantic[margin_idx[rescue]], background)
    node[margin_idx[rescue]] = margin_node[rescue]
    return component


def _merge(core_node: np.ndarray, core_tile: np.ndarray, margin_node: np.ndarray,
           margin_tile: np.ndarray, node_tile: np.ndarray, num_nodes: int,
           num_tiles: int) -> np.ndarray:
    """Component of every tile instance ("node") after merging the pairs whose IoU over the
    points both their tiles segmented reaches ``MERGE_IOU``. Inputs are per margin view of
    a point: the node and tile of its core view, and the node and tile of the margin view."""
    a_ok, b_ok = core_node >= 0, margin_node >= 0
    # seen(x, u): how many points of node x lie where tile u also looked.
    seen_keys, seen_counts = np.unique(np.concatenate([
        core_node[a_ok] * num_tiles + margin_tile[a_ok],
        margin_node[b_ok] * num_tiles + core_tile[b_ok]]), return_counts=True)
    both = a_ok & b_ok
    # Unordered pairs, packed into one int64 (a 1-D unique, not unique(axis=0)): both cores count.
    low = np.minimum(core_node[both], margin_node[both])
    pairs, inter = np.unique(low * num_nodes + np.maximum(core_node[both], margin_node[both]),
                             return_counts=True)
    if len(pairs) == 0:
        return np.arange(num_nodes)
    a, b = np.divmod(pairs, num_nodes)

    def seen(x: np.ndarray, tile: np.ndarray) -> np.ndarray:
        return seen_counts[np.searchsorted(seen_keys, x * num_tiles + tile)]

    iou = inter / (seen(a, node_tile[b]) + seen(b, node_tile[a]) - inter)
    link = iou >= MERGE_IOU
    graph = coo_matrix((np.ones(int(link.sum())), (a[link], b[link])), shape=(num_nodes, num_nodes))
    return connected_components(graph, directed=False)[1]


def tile_instances(points: np.ndarray, node: np.ndarray, component: np.ndarray, classes: np.ndarray,
                   scores: np.ndarray, min_points: int, known: Optional[dict] = None,
                   voxels: Optional[Voxels] = None) -> "tuple[np.ndarray, list, np.ndarray]":
    """Per-point instance ids 0.. by decreasing size, their records, and per instance the id it
    had in the call that filled ``known`` (-1: new or changed), from each point's node (-1:
    none), the nodes' components, classes and scores.

    With ``voxels`` (the voxels of ``points``), ``node`` is per voxel: a voxel's points share
    its node, so sizes, class votes and scores are counted per voxel, weighted by its points,
    and only the ids and the coordinate sums pass over every point.

    ``known``, when given, maps instances of an earlier call (class, score, point count and
    coordinate sums) to their records: an instance with the same ones has the same points, so
    its record is reused under its new id. It is refilled with this call's instances."""
    weight = None if voxels is None else voxels.counts
    labelled = node >= 0
    comp = np.full(len(node), -1, dtype=np.int64)
    comp[labelled] = component[node[labelled]]
    sizes = np.bincount(comp[labelled], None if weight is None else weight[labelled], len(component))
    sizes = sizes.astype(np.int64)  # whole numbers either way
    ids = np.flatnonzero(sizes)
    counts = sizes[ids]
    order = np.lexsort((ids, -counts))
    ids, counts = ids[order][counts[order] >= min_points], counts[order][counts[order] >= min_points]
    remap = np.full(len(component), -1, dtype=np.int64)
    remap[ids] = np.arange(len(ids))
    unit = np.full(len(node), -1, dtype=np.int64)
    unit[labelled] = remap[comp[labelled]]
    inside = unit >= 0
    members, member_nodes = unit[inside], node[inside]
    member_weight = None if weight is None else weight[inside]
    member_scores = scores[member_nodes] if weight is None else scores[member_nodes] * member_weight
    score_sum = np.bincount(members, weights=member_scores, minlength=len(ids))
    votes = np.bincount(members * NUM_CLASSES + classes[member_nodes], member_weight,
                        len(ids) * NUM_CLASSES).reshape(len(ids), NUM_CLASSES)
    instance = unit if voxels is None else unit[voxels.inverse]
    # Coordinate sums over all points, instance -1 in bin 0: no masked copy of each column.
    keys = list(zip(votes.argmax(1).tolist(), (score_sum / np.maximum(counts, 1)).tolist(), counts.tolist(),
                    *(np.bincount(instance + 1, weights=points[:, j], minlength=len(ids) + 1)[1:].tolist()
                      for j in range(3) if known is not None)))
    found = [None if known is None else known.get(key) for key in keys]
    # The points of the instances whose records are made afresh, grouped by instance.
    new = np.zeros(len(ids) + 1, dtype=bool)
    new[[k for k, record in enumerate(found) if record is None]] = True
    sort = np.flatnonzero(new[instance])  # instance -1 reads the last entry, False
    sort = sort[stable_argsort(instance[sort], len(ids))]
    starts = np.searchsorted(instance[sort], np.arange(len(ids) + 1))
    records, previous = [], np.full(len(keys), -1, dtype=np.int64)
    for k, (key, record) in enumerate(zip(keys, found)):
        if record is not None:
            previous[k] = record.id
        records.append(instance_record(k, points[sort[starts[k]:starts[k + 1]]], key[0], key[1])
                       if record is None else replace(record, id=k))
    if known is not None:
        known.clear()
        known.update(zip(keys, records))
    return instance, records, previous


def stable_argsort(values: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of integers in [0, ``bound``): numpy sorts 16-bit integers by radix, in
    linear time, so values that fit are sorted as int16."""
    small = np.int16 if bound <= np.iinfo(np.int16).max else values.dtype
    return np.argsort(values.astype(small, copy=False), kind="stable")
