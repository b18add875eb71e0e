"""Voxelisation of point clouds and the point <-> voxel maps (paper §IV: 2 cm voxels).

A point ``p`` falls in the voxel ``floor(p / voxel_size)`` (the authors' code, 96lives/ssen at ec4006e).
``voxelize`` returns one entry per occupied voxel with the mean of its points' features and the
point -> voxel ``inverse`` map; ``devoxelize`` spreads per-voxel values back to the points.

Coordinates are returned relative to ``origin`` (the per-axis minimum voxel index, rounded down to a multiple of 16), so a map
far from its frame's origin (±10 km) still gives small int32 coordinates: the absolute voxel
index of voxel ``i`` is ``coords[i] + origin``. Points are divided in float64 whatever their
dtype, so the voxel of a float64 point is exact to float64 rounding even at ±10 km.

Grouping packs the three relative indices into one int64 key (each axis with the bits its
extent needs, at most 21) and sorts it, which avoids ``np.unique(axis=0)``'s row-wise
comparisons (``python -m benchmarks io`` times it); the point's index is packed beside the key
where it fits, so one ``np.sort`` gives the order too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BITS = 21
_MAX_EXTENT = 1 << _BITS  # voxels per axis that fit one packed key
GRID_ALIGN = 16  # origins are multiples of the UNets' coarsest stride


@dataclass(frozen=True)
class Voxels:
    """Occupied voxels of a cloud, sorted by (x, y, z) index.

    ``coords`` int32 (M, 3) relative voxel indices (>= 0); ``origin`` int64 (3,) voxel index of
    the grid corner, so ``coords + origin == floor(points / voxel_size)``; ``features`` (M, F)
    mean feature of each voxel's points; ``inverse`` int64 (N,) voxel of each point;
    ``counts`` int64 (M,) points per voxel; ``voxel_size`` in metres.
    """

    coords: np.ndarray
    features: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray
    origin: np.ndarray
    voxel_size: float

    def __len__(self) -> int:
        return len(self.coords)

    def centers(self) -> np.ndarray:
        """Voxel centres in metres, float64 (M, 3)."""
        return (self.coords + self.origin + 0.5) * self.voxel_size


_BLOCK = 1024  # rows per block of column_bounds


def column_bounds(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column minimum and maximum of an (N, D) array with a few columns (N > 0).

    numpy vectorises a reduction along a row, not down a short axis (``min(0)`` of an (N, 3)
    array is several times slower than three column passes), so a C-contiguous array is reduced
    as (N / 1024, 1024 D) blocks of rows laid side by side, and what is left column by column."""
    a = np.asarray(a)
    n, d = a.shape
    cut = n - n % _BLOCK if a.flags.c_contiguous else 0
    lows, highs = [], []
    if cut:
        blocks = a[:cut].reshape(-1, _BLOCK * d)
        lows.append(blocks.min(0).reshape(_BLOCK, d).min(0))
        highs.append(blocks.max(0).reshape(_BLOCK, d).max(0))
    if cut < n:
        lows.append(np.array([c.min() for c in a[cut:].T]))
        highs.append(np.array([c.max() for c in a[cut:].T]))
    return np.min(lows, axis=0), np.max(highs, axis=0)


def voxelize(points: np.ndarray, features: "np.ndarray | None" = None,
             voxel_size: float = 0.02) -> Voxels:
    """Group ``points`` (N, 3) into voxels of ``voxel_size`` metres and average ``features``.

    ``features`` is (N, F) or (N,) (treated as F = 1) or None (F = 0). Float32 features give
    float32 means (summed in float64); any other dtype gives float64 means.
    Raises ``ValueError`` for non-finite points, a non-positive voxel size, mismatched
    lengths, or a cloud wider than 2**21 voxels along an axis (42 km at 2 cm).
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    n = len(points)
    feats = np.zeros((n, 0)) if features is None else np.asarray(features)
    if feats.ndim == 1:
        feats = feats[:, None]
    if feats.ndim != 2 or len(feats) != n:
        raise ValueError(f"features must have shape (N, F) with N = {n}, got {feats.shape}")
    out_dtype = np.float32 if feats.dtype == np.float32 else np.float64

    if n == 0:
        return Voxels(np.zeros((0, 3), np.int32), np.zeros((0, feats.shape[1]), out_dtype),
                      np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(3, np.int64),
                      float(voxel_size))
    low, high = column_bounds(points)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        bad = int((~np.isfinite(points)).any(axis=1).sum())
        raise ValueError(f"{bad} of {n} points are not finite; drop them before voxelize")
    # floor is monotonic, so the extreme voxels are those of the extreme coordinates
    # Rounded down to a multiple of GRID_ALIGN so that strided layers (UNet strides up to 16)
    # see the same grid whatever part of the map was cropped.
    origin = np.floor(np.floor(np.divide(low, voxel_size, dtype=np.float64)) / GRID_ALIGN) * GRID_ALIGN
    extent = np.floor(np.divide(high, voxel_size, dtype=np.float64)) - origin + 1
    if (extent > _MAX_EXTENT).any():
        raise ValueError(f"cloud spans {extent.astype(np.int64).tolist()} voxels of {voxel_size} m; at most "
                         f"{_MAX_EXTENT} per axis are supported: crop it or use larger voxels")
    # Each axis takes the bits its extent needs; when the point's index fits beside them, one
    # np.sort of key << index_bits | index gives keys and order (several times faster than
    # argsort), else argsort of the keys.
    bits = [max(int(e) - 1, 1).bit_length() for e in extent]
    index_bits = max(n - 1, 1).bit_length()
    # One axis at a time through two reused columns: an (N, 3) float64 copy of the points would
    # be three times the memory to allocate, fault in and pass over.
    keys = np.zeros(n, dtype=np.int64)
    scaled = np.empty(n, dtype=np.float64)
    rel = np.empty(n, dtype=np.int64)
    for axis, shift in enumerate((bits[1] + bits[2], bits[2], 0)):
        np.divide(points[:, axis], voxel_size, out=scaled, dtype=np.float64)
        np.floor(scaled, out=scaled)
        rel[:] = scaled  # whole numbers: the cast is exact
        rel -= int(origin[axis])
        rel <<= shift
        keys |= rel
    del scaled, rel
    if sum(bits) + index_bits <= 63:
        keys <<= index_bits
        keys |= np.arange(n, dtype=np.int64)
        keys.sort()
        order = keys & ((1 << index_bits) - 1)
        keys >>= index_bits
        sorted_keys = keys
    else:
        order = np.argsort(keys)
        sorted_keys = keys[order]
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    inverse = np.empty(n, dtype=np.int64)
    rank = np.cumsum(first)
    rank -= 1
    inverse[order] = rank
    counts = np.diff(np.append(starts, n))

    unique_keys = sorted_keys[starts]
    coords = np.empty((len(starts), 3), dtype=np.int32)
    coords[:, 0] = unique_keys >> (bits[1] + bits[2])
    coords[:, 1] = (unique_keys >> bits[2]) & ((1 << bits[1]) - 1)
    coords[:, 2] = unique_keys & ((1 << bits[2]) - 1)

    sums = np.empty((len(starts), feats.shape[1]), dtype=np.float64)
    for j in range(feats.shape[1]):
        sums[:, j] = np.bincount(inverse, weights=feats[:, j], minlength=len(starts))
    means = (sums / counts[:, None]).astype(out_dtype, copy=False)
    return Voxels(coords, means, inverse, counts, origin.astype(np.int64), float(voxel_size))


def devoxelize(voxel_values, inverse):
    """Spread per-voxel values (M, ...) back to the points: ``voxel_values[inverse]``.

    Works for numpy arrays and torch tensors alike (index with the same kind).
    """
    return voxel_values[inverse]
