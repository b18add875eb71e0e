"""Live maps: when SLAM republishes a grown or corrected map, re-segment only what changed.

SLAM republishes its map every few seconds and most of each version is the last one again.
:class:`LiveSegmenter` cuts the xy plane into square tiles fixed in the map frame (edge
``LiveConfig.tile_size``, anchored at the frame's origin, so a tile keeps its place while the map
grows) and reads each with the segmenter's ``tile_overlap`` margin, as ``ssen_ros.tiling`` does.
Every voxel belongs to the tile whose core holds its centre and is seen by each tile whose
window (core plus margin) holds it. Per tile it keeps the result of the tile's last run, per
voxel of its window: the voxel's key, class and tile-local instance, and each instance's class
and score. Network activations are never kept, so memory grows with the map's voxels only.

For each map:

1. **Detect.** A tile re-runs when it has no result yet, or when the voxels of its window differ
   from those of its last run in more than ``changed_voxels`` (added plus removed; a region that
   SLAM shifted by more than a voxel changes both). With ``change_margin`` below the margin,
   only the voxels within ``change_margin`` of the tile's core count. Each tile is compared with
   its own last run, not with the last map, so small changes add up until they count. Changes
   inside occupied voxels (colour, more points) do not count. A window with its last run's
   voxel count and hash (:func:`window_hashes`) is unchanged without comparing voxel by voxel.
2. **Re-run** the changed tiles: both networks and the clustering on the points of their windows.
   When they hold more than ``full_share`` of all windows' voxels, every tile re-runs.
3. **Stitch** every tile, re-run or kept, as the tiling does: a voxel takes its labels from its
   core tile; instances cut by a border merge when their IoU over the voxels both tiles saw
   reaches ``tiling.MERGE_IOU``; unclustered foreground joins a neighbour's instance
   (``tiling.join_tiles``); instance ids, records and boxes come from the whole map's points
   (``tiling.tile_instances``), so the output is always complete. Voxels that appeared in a kept
   window are not labelled by that tile until it re-runs.

So the result equals :meth:`LiveSegmenter.full` on the same map whenever every change is above
the threshold and ``change_margin`` covers the margin (same tiles, same per-tile runs). Below it a
kept tile keeps its last result with its new voxels unlabelled, where a full run would segment
the tile afresh; the clustering's sample makes such a re-run differ by more than those few
voxels (``benchmarks/live.md``).
The tiles differ from ``Segmenter``'s (it stretches its grid to each map's extent, with larger
tiles by default), so a full ``Segmenter`` run differs from both.
Stable ids across maps are the node's ``ros.tracking``, as without live mode; ``previous_`` tells
it which instances are unchanged, so that only the others are matched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ssen_ros.config import LiveConfig
from ssen_ros.instances import Instance
from ssen_ros.segmentation import Segmentation, label_points_by_instance
from ssen_ros.segmenter import Segmenter
from ssen_ros.tiling import join_tiles, stable_argsort, tile_instances
from ssen_ros.voxel import voxelize

_BITS = 21
_MASK = (1 << _BITS) - 1
_CELL_OFFSET = 1 << 30  # tile cells are packed as (x + offset) << 32 | (y + offset)


@dataclass(frozen=True)
class TileResult:
    """One tile's last run, per voxel of its window: ``keys`` (sorted, :func:`voxel_keys`),
    ``semantic`` class and tile-local ``instance`` (-1: none); per instance its ``classes`` and
    ``scores``; ``rank``, where each voxel of the window, in the window's order, is in ``keys``,
    and ``window_hash``, the window's :func:`window_hashes`."""

    keys: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    rank: np.ndarray
    window_hash: int


def voxel_keys(index: np.ndarray) -> np.ndarray:
    """One int64 per absolute voxel index (M, 3). Each axis wraps every 2**21 voxels, which no
    map spans (``voxelize`` rejects wider clouds), so keys are unique within a map."""
    index = np.asarray(index, dtype=np.int64) & _MASK
    return (index[:, 0] << (2 * _BITS)) | (index[:, 1] << _BITS) | index[:, 2]


def window_hashes(keys: np.ndarray, voxels: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """A 64-bit hash per window of the set of its voxel ``keys``: the wrapping sum of each key's
    mix (splitmix64's finaliser), so equal sets hash alike in any order, and two different sets
    alike only by a 64-bit collision."""
    h = keys.astype(np.uint64)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return np.add.reduceat(h[voxels], starts[:-1]) if len(voxels) else np.zeros(0, dtype=np.uint64)


@dataclass(frozen=True)
class _Windows:
    """The tiles of one map: ``tiles`` (T, 2) cell indices, sorted; ``core`` (M,) each voxel's
    tile; ``voxels[starts[t]:starts[t + 1]]`` the voxels of tile t's window."""

    tiles: np.ndarray
    core: np.ndarray
    voxels: np.ndarray
    starts: np.ndarray

    def window(self, t: int) -> np.ndarray:
        return self.voxels[self.starts[t]:self.starts[t + 1]]


def tile_windows(centers_xy: np.ndarray, tile_size: float, overlap: float,
                 runs: Optional[np.ndarray] = None) -> _Windows:
    """Tiles of edge ``tile_size`` anchored at the origin that hold a voxel centre in their core,
    and the voxels within ``overlap`` of each core (a voxel's own core included).

    ``runs``, when given, are the first voxels of the runs of consecutive voxels that share
    their xy centre (a column, as ``voxelize`` sorts them): the tiles are then found once per
    column, which has several voxels, and the windows list each column's voxels."""
    if runs is not None:
        col = tile_windows(centers_xy[runs], tile_size, overlap)
        sizes = np.diff(np.append(runs, len(centers_xy)))
        lengths = sizes[col.voxels]
        ends = np.cumsum(lengths)
        first = np.repeat(runs[col.voxels] - (ends - lengths), lengths)
        return _Windows(col.tiles, np.repeat(col.core, sizes), first + np.arange(len(first)),
                        np.append(0, ends)[col.starts])
    cell = np.floor(centers_xy / tile_size).astype(np.int64)
    low = np.floor((centers_xy - overlap) / tile_size).astype(np.int64)
    span = np.floor((centers_xy + overlap) / tile_size).astype(np.int64) - low + 1
    tile_codes, core = np.unique(_cell_code(cell), return_inverse=True)
    core = core.reshape(-1)
    view_voxel, view_tile = [np.arange(len(cell))], [core]
    for dx in range(int(span[:, 0].max(initial=1))):
        for dy in range(int(span[:, 1].max(initial=1))):
            inside = np.flatnonzero((dx < span[:, 0]) & (dy < span[:, 1]))
            codes = _cell_code(low[inside] + [dx, dy])
            pos = np.clip(np.searchsorted(tile_codes, codes), 0, len(tile_codes) - 1)
            # Views from a voxel's own core are already listed; cells holding no core voxel
            # are no tiles.
            keep = (tile_codes[pos] == codes) & (pos != core[inside])
            view_voxel.append(inside[keep])
            view_tile.append(pos[keep])
    voxel, tile = np.concatenate(view_voxel), np.concatenate(view_tile)
    order = stable_argsort(tile, len(tile_codes))
    starts = np.searchsorted(tile[order], np.arange(len(tile_codes) + 1))
    tiles = np.stack([(tile_codes >> 32) - _CELL_OFFSET, (tile_codes & 0xFFFFFFFF) - _CELL_OFFSET], 1)
    return _Windows(tiles, core, voxel[order], starts)


def _cell_code(cell: np.ndarray) -> np.ndarray:
    """One int64 per xy cell (C, 2), ordered as the cells are lexicographically."""
    return ((cell[:, 0] + _CELL_OFFSET) << 32) | (cell[:, 1] + _CELL_OFFSET)


class LiveSegmenter:
    """``LiveSegmenter(segmenter, config)(points, colors) -> Segmentation`` for successive
    versions of one map, re-running only the tiles that changed (module docstring).

    After a call, ``tiles_`` maps each tile's cell (ix, iy) to its :class:`TileResult`,
    ``changed_`` lists the cells that re-ran, ``full_`` says whether every tile did,
    ``records_`` holds the instance records for reuse (``tiling.tile_instances``), ``previous_``
    gives per instance id the id that an instance with exactly the same points had in the call
    before (-1: none), and ``calls_`` counts the calls that returned."""

    def __init__(self, segmenter: Segmenter, config: LiveConfig = LiveConfig()):
        self.segmenter = segmenter
        self.config = config
        self.calls_ = 0

    def reset(self) -> None:
        """Forget every tile's result, so the next call is a full run (needed when the
        segmenter's settings change)."""
        self.tiles_: dict[tuple[int, int], TileResult] = {}
        self.records_: dict[tuple, Instance] = {}

    def full(self, points: np.ndarray, colors: Optional[np.ndarray] = None) -> Segmentation:
        """Segment every tile afresh."""
        self.reset()
        return self(points, colors)

    def __call__(self, points: np.ndarray, colors: Optional[np.ndarray] = None) -> Segmentation:
        """Segment one version of the map; tiles unchanged since their last run keep its result."""
        t_start = time.perf_counter()
        seg, config = self.segmenter, self.config
        if config.tile_size <= 0:
            raise ValueError(f"live tile_size must be > 0 m, got {config.tile_size}")
        if not hasattr(self, "tiles_"):
            self.reset()
        last = self.tiles_
        points = np.asarray(points)
        rows = seg.checked_rows(points)
        pts = points[rows]
        cols = None if colors is None else np.asarray(colors)[rows]
        if len(pts) == 0:
            self.tiles_, self.changed_, self.full_ = {}, [], True
            self.records_, self.previous_ = {}, np.zeros(0, dtype=np.int64)
            self.calls_ += 1
            none = _at_rows(np.zeros(0, dtype=np.int64), rows, len(points))
            return Segmentation(none, none.copy(), [], {"total": time.perf_counter() - t_start}, num_tiles=0)
        vox = voxelize(pts, None, seg.voxel_size)
        index = vox.coords + vox.origin
        keys = voxel_keys(index)
        column = np.flatnonzero(np.diff(vox.coords[:, 0]) | np.diff(vox.coords[:, 1])) + 1
        win = tile_windows((index[:, :2] + 0.5) * seg.voxel_size, config.tile_size,
                           seg.config.tile_overlap, np.append(0, column))
        cells = [(int(x), int(y)) for x, y in win.tiles]
        sizes = np.diff(win.starts)
        hashes = window_hashes(keys, win.voxels, win.starts)
        # Where each window voxel is in its tile's last result (kept tiles reuse it to stitch),
        # and which are there: a window with the same voxels as last time has them in the same
        # order (the map's voxel order), so its last rank serves without a search.
        lookups = [None if cell not in last else
                   (last[cell].rank, slice(None)) if _unchanged(last[cell], hashes[t], sizes[t]) else
                   _lookup(last[cell].keys, keys[win.window(t)])
                   for t, cell in enumerate(cells)]
        margin = min(config.change_margin, seg.config.tile_overlap)

        def count_changes(t: int, cell: "tuple[int, int]", found) -> "int | None":
            """Voxels added or removed in tile t's window (within ``margin`` of its core) since
            its last run; None when it has none."""
            if found is None:
                return None
            if isinstance(found[1], slice):  # the same voxels
                return 0
            if margin < seg.config.tile_overlap:
                return _near_changes(last[cell].keys, found[1], index[win.window(t)], cell,
                                     config.tile_size, margin, seg.voxel_size)
            return len(last[cell].keys) + sizes[t] - 2 * int(np.count_nonzero(found[1]))

        counted = [count_changes(t, cell, found) for t, (cell, found) in enumerate(zip(cells, lookups))]
        changed = np.array([n is None or n > config.changed_voxels for n in counted], dtype=bool)
        if sizes[changed].sum() > config.full_share * sizes.sum():
            changed[:] = True
        self.full_ = bool(changed.all())
        timings = {"changes": time.perf_counter() - t_start}
        self.tiles_ = {cell: last[cell] for t, cell in enumerate(cells) if not changed[t]}
        self.changed_ = [cells[t] for t in np.flatnonzero(changed)]
        num_voxels = num_foreground = 0
        reruns = np.flatnonzero(changed)
        # The points of any re-run window, found in one pass over the map; each window's points
        # are then picked from these.
        inside = np.zeros(len(vox), dtype=bool)
        inside[np.concatenate([np.zeros(0, dtype=np.int64)] + [win.window(t) for t in reruns])] = True
        candidates = np.flatnonzero(inside[vox.inverse])
        candidate_voxel = vox.inverse[candidates]
        for t in reruns:
            window = win.window(t)
            inside[:] = False
            inside[window] = True
            idx = candidates[inside[candidate_voxel]]
            # As segment_tiled's tiles (records without geometry); these points are all in the crop.
            result = seg._segment(pts[idx], None if cols is None else cols[idx], False, slice(None), False)
            for stage, seconds in result.timings.items():
                if stage != "total":
                    timings[stage] = timings.get(stage, 0.0) + seconds
            num_voxels += result.num_voxels
            num_foreground += result.num_foreground_voxels
            self.tiles_[cells[t]] = _tile_result(result, keys[window], vox.inverse[idx], window, int(hashes[t]))
            lookups[t] = (self.tiles_[cells[t]].rank, slice(None))
        t_stitch = time.perf_counter()
        voxel_semantic = np.full(len(vox), -1, dtype=np.int64)
        node, component, classes, scores = self._stitch(win, cells, lookups, voxel_semantic)
        inst, records, self.previous_ = tile_instances(
            pts, node, component, classes, scores, seg.config.min_instance_points, self.records_, vox)
        semantic = _at_rows(voxel_semantic[vox.inverse], rows, len(points))
        instance = _at_rows(inst, rows, len(points))
        label_points_by_instance(semantic, instance, records)
        timings["stitch"] = time.perf_counter() - t_stitch
        timings["total"] = time.perf_counter() - t_start
        self.calls_ += 1
        return Segmentation(semantic, instance, records, timings, num_voxels, num_foreground,
                            num_tiles=len(cells))

    def _stitch(self, win: _Windows, cells: list, lookups: list, semantic: np.ndarray
                ) -> "tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]":
        """Each voxel's node (tile instance) after the border merges, the nodes' components,
        classes and scores; fills ``semantic`` (per voxel) from the core tiles. ``lookups[t]``
        is where tile t's window voxels are in its result, and which of them it holds."""
        node = np.full(len(semantic), -1, dtype=np.int64)
        margin_idx, margin_node, margin_tile, node_tile, classes, scores = [], [], [], [], [], []
        for t, cell in enumerate(cells):
            result, window = self.tiles_[cell], win.window(t)
            pos, seen = lookups[t]
            voxels, pos = window[seen], pos[seen]
            local = result.instance[pos]
            tile_node = np.where(local >= 0, local + len(node_tile), -1)
            core = win.core[voxels] == t
            semantic[voxels[core]] = result.semantic[pos[core]]
            node[voxels[core]] = tile_node[core]
            margin_idx.append(voxels[~core])
            margin_node.append(tile_node[~core])
            margin_tile.append(np.full(int((~core).sum()), t, dtype=np.int64))
            node_tile.extend([t] * len(result.classes))
            classes.append(result.classes)
            scores.append(result.scores)
        component = join_tiles(semantic, node, win.core, np.concatenate(margin_idx),
                               np.concatenate(margin_node), np.concatenate(margin_tile),
                               np.asarray(node_tile, dtype=np.int64), len(cells), self.segmenter.background)
        return node, component, np.concatenate(classes), np.concatenate(scores)


def _at_rows(values: np.ndarray, rows: "np.ndarray | slice", n: int) -> np.ndarray:
    """``values`` of the segmented ``rows`` as an array over all ``n`` points, -1 at the others;
    ``values`` itself when every row was segmented (no map-sized copy)."""
    if isinstance(rows, slice):
        return values
    out = np.full(n, -1, dtype=np.int64)
    out[rows] = values
    return out


def _near(index_xy: np.ndarray, cell: "tuple[int, int]", tile_size: float, margin: float,
          voxel_size: float) -> np.ndarray:
    """Which voxels (absolute xy indices) have their centre within ``margin`` of the core of
    tile ``cell``."""
    xy = (index_xy + 0.5) * voxel_size
    lo = np.array(cell) * tile_size - margin
    return ((xy >= lo) & (xy < lo + tile_size + 2 * margin)).all(1)


def _near_changes(last_keys: np.ndarray, found: np.ndarray, index: np.ndarray, cell: "tuple[int, int]",
                  tile_size: float, margin: float, voxel_size: float) -> int:
    """Voxels added or removed within ``margin`` of a tile's core, from its last result's keys,
    which of its window's voxels (absolute indices ``index``) they hold, and the window."""
    near = _near(index[:, :2], cell, tile_size, margin, voxel_size)
    # The last voxels' xy from their keys: each axis wraps every 2**21 voxels, so it is read as
    # an offset from a voxel just below the tile's window.
    base = np.floor((np.array(cell) * tile_size - margin) / voxel_size).astype(np.int64) - 1
    last_xy = np.stack([((last_keys >> (2 * _BITS)) - base[0]) & _MASK,
                        ((last_keys >> _BITS) - base[1]) & _MASK], 1) + base
    last_near = _near(last_xy, cell, tile_size, margin, voxel_size)
    return int(np.count_nonzero(last_near)) + int(np.count_nonzero(near)) - 2 * int(np.count_nonzero(near & found))


def _unchanged(result: TileResult, window_hash: int, size: int) -> bool:
    """Whether a window holds the voxels of ``result``'s run: same count and hash."""
    return len(result.keys) == size and result.window_hash == window_hash


def _lookup(a: np.ndarray, b: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """Where each of ``b`` is in ``a`` (sorted, not empty), and whether it is there. With both
    distinct, ``len(a) + len(b) - 2 * found.sum()`` keys are in one but not both."""
    pos = np.minimum(np.searchsorted(a, b), len(a) - 1)
    return pos, a[pos] == b


def _tile_result(result: Segmentation, window_keys: np.ndarray, point_voxel: np.ndarray,
                 window: np.ndarray, window_hash: int) -> TileResult:
    """A tile's per-point result as per-voxel labels (a voxel's points share them), with its
    instances renumbered 0..K-1, sorted by key, and where each window voxel went in it."""
    local = np.full(int(window.max()) + 1, -1, dtype=np.int64)
    local[window] = np.arange(len(window))
    at = local[point_voxel]
    semantic = np.full(len(window), -1, dtype=np.int16)
    semantic[at] = result.semantic
    ids = np.array([r.id for r in result.instances], dtype=np.int64)
    renumber = np.full(int(max(ids.max(initial=-1), result.instance.max(initial=-1))) + 2, -1, dtype=np.int32)
    renumber[ids] = np.arange(len(ids))
    instance = np.full(len(window), -1, dtype=np.int32)
    instance[at] = renumber[result.instance]
    order = np.argsort(window_keys)
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order))
    return TileResult(window_keys[order], semantic[order], instance[order],
                      np.array([r.class_id for r in result.instances], dtype=np.int64),
                      np.array([r.score for r in result.instances], dtype=np.float64), rank, window_hash)
