"""Coordinate sets and kernel maps of one sparse input, built once and shared by every layer.

A sparse UNet (paper §III-A, the MinkowskiEngine Res16UNet) sees a handful of coordinate sets:
the voxels at stride 1 and their coarsenings at strides 2, 4, 8, 16. Every convolution at one
stride with one kernel size uses the same neighbour pairs, so :class:`KernelMaps` builds each
map on first use and caches it:

- ``submanifold(stride, k)``: for every kernel offset, the (input row, output row) pairs with
  ``input = output + offset``; outputs are the inputs' own coordinates.
- ``downsample(stride)``: the coordinates at ``2*stride`` (``floor(c / 2s) * 2s``) and, for every
  finer row, its coarse parent and which of the 8 offsets it sits at. A stride-2 kernel-2
  convolution and its transpose both use this map; each fine row has exactly one partner.

Kernel offsets follow MinkowskiEngine 0.5 (``kernel_region.hpp``, region HYPER_CUBE): offset
index ``k`` has per-axis digits ``k % K``, ``k // K % K``, ``k // K² % K`` for x, y, z (x varies
fastest); for odd K the digit i means ``(i - K//2) * stride``, for even K it means ``i * stride``.
So a checkpoint's ``kernel[k]`` means the same here as there.

Lookup uses int64 keys that pack (batch, x, y, z) linearly, so ``key(c + d) = key(c) + key(d)``:
neighbours are found in a dense grid over the bounding box when it is small, else by
``torch.searchsorted`` on the sorted keys. No hash table to write, and both run on any device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor

MARGIN = 256
"""Padding of the key box, in voxels, so neighbour and parent coordinates never alias."""

GRID_MAX_CELLS = 1 << 25
"""Largest dense lookup grid for a submanifold map (int32 cells: 128 MiB), and at most
``GRID_CELLS_PER_VOXEL`` cells per voxel; sparser or larger boxes search the sorted keys."""
GRID_CELLS_PER_VOXEL = 256


class CoordinateError(ValueError):
    """Coordinates that cannot form a sparse tensor (shape, dtype, duplicates, range)."""


def kernel_offsets(kernel_size: int, stride: int = 1) -> Tensor:
    """(K³, 3) int64 offsets in MinkowskiEngine HYPER_CUBE order (x fastest), scaled by stride."""
    r = torch.arange(kernel_size)
    digits = r - kernel_size // 2 if kernel_size % 2 else r
    z, y, x = torch.meshgrid(digits, digits, digits, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1) * stride


@dataclass(frozen=True)
class Tile:
    """A range of output rows ``[start, stop)`` and every pair that ends in it.

    ``segments`` are ``(k, a, b)``: rows a..b of the tile's pair list belong to offset k.
    ``in32``/``out_rows`` are the pairs' input (int32) and output (int64) rows; ``bag`` orders
    the pairs by output row and ``bag_offsets[r]`` is where output row ``start + r`` begins.
    """

    start: int
    stop: int
    segments: tuple[tuple[int, int, int], ...]
    in32: Tensor | None
    out_rows: Tensor | None
    bag: Tensor | None
    bag_offsets: Tensor | None

    @staticmethod
    def build(start: int, stop: int, segments: list, ins: list[Tensor], outs: list[Tensor]) -> "Tile":
        if not ins:
            return Tile(start, stop, (), None, None, None, None)
        in_rows, out_rows = torch.cat(ins), torch.cat(outs)
        sorted_out, bag = torch.sort(out_rows, stable=True)
        offsets = torch.searchsorted(sorted_out, torch.arange(start, stop, device=out_rows.device))
        return Tile(start, stop, tuple(segments), in_rows.to(torch.int32), out_rows, bag, offsets)

    @property
    def num_pairs(self) -> int:
        return 0 if self.in32 is None else self.in32.shape[0]


@dataclass(frozen=True)
class KernelMap:
    """Which input row meets which output row at each kernel offset.

    ``pairs[k]`` is ``(in_rows, out_rows)`` for offset ``k``: int64 tensors of equal length
    (``None`` for the centre of a submanifold map, where input row i meets output row i).
    Within one offset no row repeats, so a scatter-add per offset never collides.
    """

    num_in: int
    num_out: int
    pairs: tuple[tuple[Tensor, Tensor] | None, ...]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def volume(self) -> int:
        return len(self.pairs)

    @property
    def center(self) -> int | None:
        """The identity offset of a submanifold map, None otherwise."""
        return next((k for k, p in enumerate(self.pairs) if p is None), None)

    @property
    def num_pairs(self) -> int:
        """Input-output pairs over all offsets, an identity centre included."""
        return sum(self.num_in if p is None else len(p[0]) for p in self.pairs)

    def tiles(self, rows: int) -> list[Tile]:
        """Output rows cut into tiles holding about ``rows`` pairs each (cached per ``rows``).

        A tile lists its pairs offset by offset (one matmul per offset) and, for each of its
        output rows, where that row's pairs sit (a bag), so a convolution sums them with one
        ``embedding_bag`` and writes each output row once: no scatter-add into the output.
        """
        if rows not in self._cache:
            per_offset = []
            for k, p in enumerate(self.pairs):
                if p is None or len(p[0]) == 0:
                    continue
                i, o = p
                if len(o) > 1 and not bool((o[1:] >= o[:-1]).all()):
                    o, order = torch.sort(o, stable=True)
                    i = i[order]
                per_offset.append((k, i, o))
            device = self.pairs[0][0].device if per_offset else None
            total = sum(len(i) for _, i, _ in per_offset)
            bounds = [0, self.num_out]
            if total > rows:
                counts = torch.bincount(torch.cat([o for _, _, o in per_offset]), minlength=self.num_out)
                cut = torch.searchsorted(counts.cumsum(0), torch.arange(rows, total, rows, device=device))
                bounds = sorted({0, self.num_out, *(cut + 1).clamp(max=self.num_out).tolist()})
            edges = torch.tensor(bounds, device=device)
            at = [torch.searchsorted(o, edges).tolist() for _, _, o in per_offset]
            tiles = []
            for t in range(len(bounds) - 1):
                segments, ins, outs, start = [], [], [], 0
                for (k, i, o), a in zip(per_offset, at):
                    if a[t + 1] > a[t]:
                        ins.append(i[a[t]:a[t + 1]])
                        outs.append(o[a[t]:a[t + 1]])
                        segments.append((k, start, start + a[t + 1] - a[t]))
                        start += a[t + 1] - a[t]
                tiles.append(Tile.build(bounds[t], bounds[t + 1], segments, ins, outs))
            self._cache[rows] = tiles
        return self._cache[rows]

    def transposed(self) -> "KernelMap":
        """The same pairs seen from the output side (for transposed convolution and gradients)."""
        if "T" not in self._cache:
            self._cache["T"] = KernelMap(self.num_out, self.num_in,
                                         tuple(None if p is None else (p[1], p[0]) for p in self.pairs))
        return self._cache["T"]


class KernelMaps:
    """Lazily built, cached coordinate sets and kernel maps for one batch of voxels.

    ``coords`` is an (N, 4) integer tensor of (batch, x, y, z) at stride 1, rows unique.
    """

    def __init__(self, coords: Tensor) -> None:
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise CoordinateError(f"coordinates must be (N, 4) (batch, x, y, z), got {tuple(coords.shape)}")
        if coords.dtype.is_floating_point or coords.dtype == torch.bool:
            raise CoordinateError(f"coordinates must be integers, got {coords.dtype}")
        if len(coords) == 0:
            raise CoordinateError("coordinates are empty (0 voxels)")
        coords = coords.to(torch.int32)
        lo = coords.amin(0).to(torch.int64)
        hi = coords.amax(0).to(torch.int64)
        if lo[0] < 0:
            raise CoordinateError(f"batch indices must be >= 0, got {int(lo[0])}")
        self._origin = torch.cat([lo.new_zeros(1), lo[1:] - MARGIN]).to(coords.device)
        ext = (hi - lo + 1).tolist()
        ext = [ext[0]] + [e + 2 * MARGIN for e in ext[1:]]
        if float(ext[0]) * ext[1] * ext[2] * ext[3] >= 2.0 ** 62:
            raise CoordinateError(f"coordinate range {ext} is too large to index")
        self._mult = torch.tensor([ext[1] * ext[2] * ext[3], ext[2] * ext[3], ext[3], 1],
                                  dtype=torch.int64, device=coords.device)
        self._coords: dict[int, Tensor] = {1: coords}
        self._sorted: dict[int, tuple[Tensor, Tensor | None]] = {}
        self._sub: dict[tuple[int, int], KernelMap] = {}
        self._down: dict[int, KernelMap] = {}
        keys, _ = self._sorted_keys(1)
        if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
            raise CoordinateError(f"coordinates contain duplicate voxels "
                                  f"({len(keys) - len(torch.unique_consecutive(keys))} repeats)")

    @property
    def device(self) -> torch.device:
        return self._coords[1].device

    def keys(self, coords: Tensor) -> Tensor:
        """int64 key of each (batch, x, y, z) row; linear in the coordinates."""
        return ((coords.to(torch.int64) - self._origin) * self._mult).sum(1)

    def coords(self, stride: int) -> Tensor:
        """(N_s, 4) int32 coordinates at ``stride`` (multiples of it), building coarser sets."""
        if stride not in self._coords:
            self.downsample(stride // 2)
        return self._coords[stride]

    def _sorted_keys(self, stride: int) -> tuple[Tensor, Tensor | None]:
        """Sorted keys of the set at ``stride`` and the row of each (None when already sorted)."""
        if stride not in self._sorted:
            keys = self.keys(self.coords(stride))
            if len(keys) < 2 or bool((keys[1:] > keys[:-1]).all()):
                self._sorted[stride] = (keys, None)
            else:
                self._sorted[stride] = torch.sort(keys)
        return self._sorted[stride]

    def submanifold(self, stride: int, kernel_size: int) -> KernelMap:
        """Pairs of a stride-preserving convolution with an odd ``kernel_size`` at ``stride``."""
        if kernel_size % 2 == 0:
            raise ValueError(f"submanifold convolution needs an odd kernel size, got {kernel_size}")
        key = (stride, kernel_size)
        if key not in self._sub:
            n = len(self.coords(stride))
            volume = kernel_size ** 3
            rows_sorted = self._sorted_keys(stride)[1] is None
            pairs: list[tuple[Tensor, Tensor] | None] = [None] * volume
            for k, found in enumerate(self._neighbour_rows(stride, kernel_size)):
                hit = found >= 0
                out_rows = hit.nonzero().squeeze(1)
                in_rows = found[hit].to(torch.int64)
                pairs[k] = (in_rows, out_rows)
                # the mirror offset pairs the same voxels the other way round; keep it sorted by output
                mirror_out, idx = (in_rows, None) if rows_sorted else torch.sort(in_rows)
                pairs[volume - 1 - k] = (out_rows if idx is None else out_rows[idx], mirror_out)
            self._sub[key] = KernelMap(n, n, tuple(pairs))
        return self._sub[key]

    def _neighbour_rows(self, stride: int, kernel_size: int) -> Iterator[Tensor]:
        """For each of the first half of the kernel offsets: the row at every row + offset, -1 if empty.

        A dense int32 grid over the bounding box answers each offset with one gather when the box
        is small (a room or a map tile: ~10 cells per voxel at 5 cm); otherwise binary search
        in the sorted keys, several times slower (docs/measurements.md).
        """
        coords = self.coords(stride).to(torch.int64)
        n = len(coords)
        half = kernel_offsets(kernel_size)[: kernel_size ** 3 // 2].to(self.device)
        r = kernel_size // 2
        cells = torch.div(coords[:, 1:], stride, rounding_mode="floor")
        lo = cells.amin(0) - r
        ext = (cells.amax(0) + r - lo + 1).tolist()
        box = ext[0] * ext[1] * ext[2]
        size = (int(coords[:, 0].max()) + 1) * box
        if size <= min(GRID_MAX_CELLS, GRID_CELLS_PER_VOXEL * n):
            mult = torch.tensor([ext[1] * ext[2], ext[2], 1], device=self.device)
            key = coords[:, 0] * box + ((cells - lo) * mult).sum(1)
            grid = torch.full((size,), -1, dtype=torch.int32, device=self.device)
            grid[key] = torch.arange(n, dtype=torch.int32, device=self.device)
            for delta in (half * mult).sum(1).tolist():
                yield grid[key + delta]
            return
        sorted_keys, order = self._sorted_keys(stride)
        out_keys = self.keys(coords)
        for delta in (half * stride * self._mult[1:]).sum(1):
            query = out_keys + delta
            pos = torch.searchsorted(sorted_keys, query).clamp_(max=n - 1)
            rows = pos if order is None else order[pos]
            yield torch.where(sorted_keys[pos] == query, rows, -1)

    def downsample(self, stride: int) -> KernelMap:
        """Kernel-2 stride-2 map from the set at ``stride`` (in) to ``2*stride`` (out).

        Every fine row has exactly one coarse partner; the coarse set is built and cached here.
        """
        if stride not in self._down:
            fine = self.coords(stride)
            c64 = fine.to(torch.int64)
            xyz = c64[:, 1:]
            coarse_xyz = torch.div(xyz, 2 * stride, rounding_mode="floor") * (2 * stride)
            digit = torch.div(xyz - coarse_xyz, stride, rounding_mode="floor")
            offset = digit[:, 0] + 2 * digit[:, 1] + 4 * digit[:, 2]
            coarse = torch.cat([c64[:, :1], coarse_xyz], 1)
            ckeys, parent = torch.unique(self.keys(coarse), return_inverse=True)
            coarse_rows = torch.zeros(len(ckeys), dtype=torch.int64, device=self.device)
            coarse_rows.scatter_(0, parent, torch.arange(len(fine), device=self.device))
            self._coords[2 * stride] = coarse[coarse_rows].to(torch.int32)
            self._sorted[2 * stride] = (ckeys, None)
            offset_sorted, perm = torch.sort(offset, stable=True)
            counts = torch.bincount(offset_sorted, minlength=8).tolist()
            pairs = tuple(zip(torch.split(perm, counts), torch.split(parent[perm], counts)))
            self._down[stride] = KernelMap(len(fine), len(ckeys), pairs)
        return self._down[stride]
