"""Stable instance ids across runs of the node (no paper equation; the node's own bookkeeping).

The segmenter numbers instances 0..K-1 afresh for every map. A planner needs "chair 7" to stay
chair 7 when the map grows or SLAM nudges it, so each new instance takes the id of the last
run's instance of the same class that it overlaps most, measured as the IoU of the sets of
occupied cells of a 10 cm grid, where a cell counts as shared when the other instance occupies
it or a neighbouring cell. Plain cell IoU of surface samples collapses when an object moves by
half a cell (a chair moved 5 cm diagonally scores about 0.2); with the one-cell tolerance it
stays above 0.9, while two chairs 10 cm apart score about 0.2 against each other, below the
default threshold. The one-to-one assignment maximising total IoU is scipy's Hungarian solver
(``linear_sum_assignment``); pairs below ``min_iou`` stay unmatched and get fresh ids.
Pure numpy/scipy, no ROS.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ssen_ros.instances import Instance


def cell_keys(points: np.ndarray, cell: float) -> np.ndarray:
    """One int64 key per point naming its cell of a grid with edge ``cell`` (21 bits per axis)."""
    idx = np.floor(np.asarray(points, dtype=np.float64) / cell).astype(np.int64) + (1 << 20)
    idx &= (1 << 21) - 1  # wraps beyond +-100 km at 10 cm cells, far outside any indoor map
    return (idx[:, 0] << 42) | (idx[:, 1] << 21) | idx[:, 2]


def unique_pairs(keys: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (key, owner) pairs, sorted (lexsort: faster than ``np.unique(axis=0)``)."""
    order = np.lexsort((owners, keys))
    keys, owners = keys[order], owners[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = (keys[1:] != keys[:-1]) | (owners[1:] != owners[:-1])
    return keys[first], owners[first]


def instance_cells(points: np.ndarray, point_instance: np.ndarray, cell: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (cell key, instance) pairs of the points in an instance (``point_instance >= 0``)."""
    inside = point_instance >= 0
    return unique_pairs(cell_keys(points[inside], cell), point_instance[inside])


_NEIGHBOURS = np.array([(dx << 42) + (dy << 21) + dz for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                        for dz in (-1, 0, 1)], dtype=np.int64)


def dilate(keys: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (key, owner) pairs of every cell within one cell (3x3x3) of a given pair."""
    return unique_pairs((keys[:, None] + _NEIGHBOURS[None, :]).reshape(-1),
                        np.repeat(owners, len(_NEIGHBOURS)))


def overlap_counts(keys_a: np.ndarray, inst_a: np.ndarray, keys_b: np.ndarray, inst_b: np.ndarray,
                   size_a: int, size_b: int) -> np.ndarray:
    """(size_a, size_b) matrix of how many cells instance i of a shares with instance j of b.

    Inputs are distinct (key, instance) pairs; a cell may hold several instances, so the join
    expands each key of ``a`` over all equal keys of ``b`` (sort + searchsorted, no Python loop).
    """
    order = np.argsort(keys_b, kind="stable")
    sorted_keys = keys_b[order]
    lo = np.searchsorted(sorted_keys, keys_a, side="left")
    hi = np.searchsorted(sorted_keys, keys_a, side="right")
    reps = hi - lo
    rows = np.repeat(inst_a, reps)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(reps)[:-1]]), reps)
    cols = inst_b[order[starts + np.arange(reps.sum())]]
    counts = np.zeros((size_a, size_b), dtype=np.int64)
    np.add.at(counts, (rows, cols), 1)
    return counts


def tolerant_iou(keys_a: np.ndarray, inst_a: np.ndarray, size_a: int,
                 keys_b: np.ndarray, inst_b: np.ndarray, size_b: int) -> np.ndarray:
    """(size_a, size_b) IoU of the instances' cell sets, where a cell counts as shared when the
    other instance occupies it or one of its 26 neighbours (averaged over both directions)."""
    cells_a = np.bincount(inst_a, minlength=size_a)
    cells_b = np.bincount(inst_b, minlength=size_b)
    a_near_b = overlap_counts(keys_a, inst_a, *dilate(keys_b, inst_b), size_a, size_b)
    b_near_a = overlap_counts(keys_b, inst_b, *dilate(keys_a, inst_a), size_b, size_a)
    shared = (a_near_b + b_near_a.T) / 2
    union = cells_a[:, None] + cells_b[None, :] - shared
    return np.where(union > 0, shared / np.maximum(union, 1), 0.0)


class IdTracker:
    """Gives each run's instances ids that persist across runs (``update``), starting at 0."""

    def __init__(self, cell: float = 0.1, min_iou: float = 0.3):
        if cell <= 0:
            raise ValueError(f"tracking cell must be > 0 m, got {cell}")
        self.cell = cell
        self.min_iou = min_iou
        self._next_id = 0
        self._ids = np.zeros(0, dtype=np.int64)  # last run's stable ids and classes, by row
        self._classes = np.zeros(0, dtype=np.int64)
        self._keys = np.zeros(0, dtype=np.int64)
        self._owners = np.zeros(0, dtype=np.int64)

    def update(self, points: np.ndarray, point_instance: np.ndarray,
               instances: Sequence[Instance]) -> dict[int, int]:
        """Stable id for each instance's id of this run; remembers this run for the next.

        ``points`` (N, 3) and ``point_instance`` (N,) are the run's points and per-point
        instance ids (-1: none), ``instances`` its records (``Instance.id`` as in
        ``point_instance``, ``Instance.class_id`` used for matching).
        """
        rows = map_ids(point_instance, {inst.id: k for k, inst in enumerate(instances)})
        keys, owners = instance_cells(points, rows, self.cell)
        classes = np.array([inst.class_id for inst in instances], dtype=np.int64)
        ids = np.full(len(instances), -1, dtype=np.int64)
        if len(self._ids) and len(instances):
            iou = tolerant_iou(keys, owners, len(instances), self._keys, self._owners, len(self._ids))
            iou[classes[:, None] != self._classes[None, :]] = 0.0
            for r, c in zip(*linear_sum_assignment(iou, maximize=True)):
                if iou[r, c] > 0 and iou[r, c] >= self.min_iou:
                    ids[r] = self._ids[c]
        fresh = ids < 0
        ids[fresh] = self._next_id + np.arange(int(fresh.sum()))
        self._next_id += int(fresh.sum())
        self._ids, self._classes, self._keys, self._owners = ids, classes, keys, owners
        return {inst.id: int(ids[k]) for k, inst in enumerate(instances)}


def map_ids(point_instance: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """``mapping[id]`` for each point's id; -1 for -1 and for ids not in ``mapping``."""
    point_instance = np.asarray(point_instance, dtype=np.int64)
    lut = np.full(int(point_instance.max(initial=-1)) + 2, -1, dtype=np.int64)
    for old, new in mapping.items():
        if old + 1 < len(lut):
            lut[old + 1] = new
    return lut[point_instance + 1]


def relabel(point_instance: np.ndarray, instances: Sequence[Instance], ids: dict[int, int]
            ) -> tuple[np.ndarray, list[Instance]]:
    """Per-point stable ids (-1 stays -1, as do points of instances missing from ``ids``) and
    copies of the records carrying their stable ids."""
    return map_ids(point_instance, ids), [dataclasses.replace(i, id=ids[i.id]) for i in instances]
