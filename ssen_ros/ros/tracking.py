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


AXIS_BITS = 16  # cells per axis before the grid wraps: 65536, 6.5 km at 10 cm
OWNER_BITS = 15  # instances per map: 32768
_AXIS_MASK = (1 << AXIS_BITS) - 1
_OWNER_MASK = (1 << OWNER_BITS) - 1


def cell_keys(points: np.ndarray, cell: float) -> np.ndarray:
    """One int64 key per point naming its cell of a grid with edge ``cell``.

    The grid wraps every 2**16 cells, so only cells 6.5 km apart (at 10 cm) share a key: no
    two parts of one indoor map, while coordinates far from the origin (UTM) still work.
    """
    idx = np.floor(np.asarray(points, dtype=np.float64) / cell).astype(np.int64) & _AXIS_MASK
    return (idx[:, 0] << (2 * AXIS_BITS)) | (idx[:, 1] << AXIS_BITS) | idx[:, 2]


def _distinct(sorted_codes: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array."""
    keep = np.ones(len(sorted_codes), dtype=bool)
    np.not_equal(sorted_codes[1:], sorted_codes[:-1], out=keep[1:])
    return sorted_codes[keep]


def instance_cells(points: np.ndarray, point_instance: np.ndarray, cell: float) -> np.ndarray:
    """Sorted distinct codes ``key << OWNER_BITS | instance`` of the cells each instance
    (``point_instance >= 0``) occupies. One int64 per (cell, instance) pair keeps the dedup a
    plain integer sort."""
    inside = np.flatnonzero(point_instance >= 0)  # indices: cheaper than a mask when few are
    owners = np.asarray(point_instance[inside], dtype=np.int64)
    if len(owners) and owners.max() > _OWNER_MASK:
        raise ValueError(f"instance id {owners.max()} needs more than {OWNER_BITS} bits")
    return _distinct(np.sort((cell_keys(np.asarray(points)[inside], cell) << OWNER_BITS) | owners))


def code_owners(codes: np.ndarray) -> np.ndarray:
    """The instance of each (cell, instance) code."""
    return codes & _OWNER_MASK


_STEPS = np.array(list(np.ndindex(3, 3, 3)), dtype=np.int64).T[:, :, None] - 1  # (3, 27, 1)


def dilate(codes: np.ndarray) -> np.ndarray:
    """Codes of every cell within one cell (3x3x3) of a code's cell, same instance, distinct.

    Each axis steps with the grid's wrap-around, so neighbours across it are right too.
    ``codes`` must be sorted; then each of the 27 shifted copies is a sorted run (but where it
    wraps), which a stable sort (timsort) merges in linear passes where ``np.unique`` sorts afresh.
    """
    key = codes >> OWNER_BITS
    axes = [(key >> (2 * AXIS_BITS)) & _AXIS_MASK, (key >> AXIS_BITS) & _AXIS_MASK, key & _AXIS_MASK]
    x, y, z = ((a[None, :] + step) & _AXIS_MASK for a, step in zip(axes, _STEPS))
    grown = ((x << (2 * AXIS_BITS) | y << AXIS_BITS | z) << OWNER_BITS) | code_owners(codes)[None, :]
    return _distinct(np.sort(grown.reshape(-1), kind="stable"))


def overlap_counts(codes_a: np.ndarray, codes_b: np.ndarray, size_a: int, size_b: int) -> np.ndarray:
    """(size_a, size_b) matrix of how many cells instance i of a shares with instance j of b.

    Inputs are sorted distinct codes; a cell may hold several instances, so the join expands
    each code of ``a`` over all codes of ``b`` with the same cell (searchsorted, no Python loop).
    """
    keys_a, keys_b = codes_a >> OWNER_BITS, codes_b >> OWNER_BITS
    lo = np.searchsorted(keys_b, keys_a, side="left")
    reps = np.searchsorted(keys_b, keys_a, side="right") - lo
    rows = np.repeat(code_owners(codes_a), reps)
    first = np.repeat(lo - np.concatenate([[0], np.cumsum(reps)[:-1]]), reps)
    cols = code_owners(codes_b)[first + np.arange(reps.sum())]
    return np.bincount(rows * size_b + cols, minlength=size_a * size_b).reshape(size_a, size_b)


def tolerant_iou(codes_a: np.ndarray, size_a: int, codes_b: np.ndarray, size_b: int,
                 grown_a: "np.ndarray | None" = None, grown_b: "np.ndarray | None" = None
                 ) -> np.ndarray:
    """(size_a, size_b) IoU of the instances' cell sets, where a cell counts as shared when the
    other instance occupies it or one of its 26 neighbours (averaged over both directions).
    ``grown_a``/``grown_b`` are ``dilate(codes_a)``/``dilate(codes_b)`` when already known."""
    grown_a = dilate(codes_a) if grown_a is None else grown_a
    grown_b = dilate(codes_b) if grown_b is None else grown_b
    cells_a = np.bincount(code_owners(codes_a), minlength=size_a)
    cells_b = np.bincount(code_owners(codes_b), minlength=size_b)
    a_near_b = overlap_counts(codes_a, grown_b, size_a, size_b)
    b_near_a = overlap_counts(codes_b, grown_a, size_b, size_a)
    shared = (a_near_b + b_near_a.T) / 2
    union = cells_a[:, None] + cells_b[None, :] - shared
    return np.where(union > 0, shared / np.maximum(union, 1), 0.0)


class IdTracker:
    """Gives each run's instances ids that persist across runs (``update``), starting at 0.

    It keeps each instance's occupied cells (and their dilation) per instance, so an instance
    that the caller knows to be unchanged (``update``'s ``same``) takes its id without its cells
    being computed or matched again; only the other instances are matched, against the last
    run's instances that no unchanged one claimed."""

    def __init__(self, cell: float = 0.1, min_iou: float = 0.3):
        if cell <= 0:
            raise ValueError(f"tracking cell must be > 0 m, got {cell}")
        self.cell = cell
        self.min_iou = min_iou
        self._next_id = 0
        self._ids = np.zeros(0, dtype=np.int64)  # last run's stable ids and classes, by row
        self._classes = np.zeros(0, dtype=np.int64)
        self._cells: list[np.ndarray] = []  # last run's cell keys per row (sorted), and dilated
        self._grown: list[np.ndarray] = []
        self._row_of: dict[int, int] = {}  # last run's instance ids -> rows

    def update(self, points: np.ndarray, point_instance: np.ndarray,
               instances: Sequence[Instance], same: "Sequence[int] | None" = None) -> dict[int, int]:
        """Stable id for each instance's id of this run; remembers this run for the next.

        ``points`` (N, 3) and ``point_instance`` (N,) are the run's points and per-point
        instance ids (-1: none), ``instances`` its records (``Instance.id`` as in
        ``point_instance``, ``Instance.class_id`` used for matching). ``same``, when given, names
        for each of ``instances`` the id (in the last call's ``instances``) of an instance with
        exactly the same points, or -1: such an instance of the same class keeps that one's
        stable id without matching (the first to name it, when several do).
        """
        classes = np.array([inst.class_id for inst in instances], dtype=np.int64)
        ids = np.full(len(instances), -1, dtype=np.int64)
        cells: list = [None] * len(instances)
        grown: list = [None] * len(instances)
        claimed = np.zeros(len(self._ids), dtype=bool)
        for k, old in enumerate([] if same is None else same):
            r = self._row_of.get(int(old), -1) if old >= 0 else -1
            if r >= 0 and not claimed[r] and self._classes[r] == classes[k]:
                claimed[r] = True
                ids[k], cells[k], grown[k] = self._ids[r], self._cells[r], self._grown[r]
        new = np.flatnonzero(ids < 0)
        if len(new):
            local = map_ids(point_instance, {instances[k].id: j for j, k in enumerate(new)})
            codes = instance_cells(points, local, self.cell)
            dilated = dilate(codes)  # used now, and against the next run
            for j, (c, g) in enumerate(zip(_per_owner(codes, len(new)), _per_owner(dilated, len(new)))):
                cells[new[j]], grown[new[j]] = c, g
            old = np.flatnonzero(~claimed)
            if len(old):
                old_codes, old_grown = (_joined([rows[r] for r in old]) for rows in (self._cells, self._grown))
                iou = tolerant_iou(codes, len(new), old_codes, len(old), dilated, old_grown)
                iou[classes[new][:, None] != self._classes[old][None, :]] = 0.0
                for r, c in zip(*linear_sum_assignment(iou, maximize=True)):
                    if iou[r, c] > 0 and iou[r, c] >= self.min_iou:
                        ids[new[r]] = self._ids[old[c]]
        fresh = ids < 0
        ids[fresh] = self._next_id + np.arange(int(fresh.sum()))
        self._next_id += int(fresh.sum())
        self._ids, self._classes, self._cells, self._grown = ids, classes, cells, grown
        self._row_of = {inst.id: k for k, inst in enumerate(instances)}
        return {inst.id: int(ids[k]) for k, inst in enumerate(instances)}


def _per_owner(codes: np.ndarray, size: int) -> list[np.ndarray]:
    """The cell keys of each owner 0..size-1 of sorted codes, each sorted."""
    owners = code_owners(codes)
    order = np.argsort(owners, kind="stable")
    starts = np.searchsorted(owners[order], np.arange(size + 1))
    keys = (codes >> OWNER_BITS)[order]
    return [keys[starts[j]:starts[j + 1]] for j in range(size)]


def _joined(keys: "list[np.ndarray]") -> np.ndarray:
    """Sorted codes of the owners 0..len(keys)-1 from each one's cell keys."""
    if not keys:
        return np.zeros(0, dtype=np.int64)
    owners = np.repeat(np.arange(len(keys), dtype=np.int64), [len(k) for k in keys])
    return np.sort((np.concatenate(keys) << OWNER_BITS) | owners)


def map_ids(point_instance: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """``mapping[id]`` for each point's id; -1 for -1 and for ids not in ``mapping``."""
    point_instance = np.asarray(point_instance, dtype=np.int64)
    lut = np.full(int(point_instance.max(initial=-1)) + 2, -1, dtype=np.int64)
    for old, new in mapping.items():
        if 0 <= old < len(lut) - 1:
            lut[old] = new
    return lut[point_instance]  # -1 reads the last entry, which no id maps


def relabel(instances: Sequence[Instance], ids: dict[int, int]) -> list[Instance]:
    """Copies of the records carrying their stable ids (the points' ids are mapped where the
    labelled cloud is written: ``ros.convert.LabeledCloudEncoder``)."""
    return [dataclasses.replace(i, id=ids[i.id]) for i in instances]
