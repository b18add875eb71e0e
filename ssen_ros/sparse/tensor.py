"""The sparse tensor: integer voxel coordinates (batch, x, y, z), features, stride, shared maps.

The SSEN networks (paper §III-A) run on voxels at 2 cm. A :class:`SparseTensor` holds one row
of features per occupied voxel. Coordinates follow the MinkowskiEngine convention: they stay in
stride-1 voxel units, and a tensor at stride ``s`` has coordinates that are multiples of ``s``.
All tensors derived from one input share one :class:`~ssen_ros.sparse.kernel_map.KernelMaps`,
so a kernel map is built once per coordinate set and reused by every layer.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ssen_ros.sparse.kernel_map import CoordinateError, KernelMaps


class SparseTensor:
    """Features (N, C) on voxels; ``coords`` is (N, 4) int32 (batch, x, y, z) at ``stride``."""

    __slots__ = ("features", "stride", "maps")

    def __init__(self, features: Tensor, coords: Tensor | None = None, *, stride: int = 1,
                 maps: KernelMaps | None = None) -> None:
        if maps is None:
            if coords is None:
                raise CoordinateError("a SparseTensor needs coords or maps")
            maps = KernelMaps(coords.to(features.device))
        if features.dim() != 2:
            raise CoordinateError(f"features must be (N, C), got {tuple(features.shape)}")
        n = len(maps.coords(stride))
        if features.shape[0] != n:
            raise CoordinateError(f"{features.shape[0]} feature rows for {n} voxels at stride {stride}")
        self.features = features
        self.stride = stride
        self.maps = maps

    @property
    def coords(self) -> Tensor:
        """(N, 4) int32 coordinates of the rows."""
        return self.maps.coords(self.stride)

    @property
    def device(self) -> torch.device:
        return self.features.device

    def __len__(self) -> int:
        return self.features.shape[0]

    def replace(self, features: Tensor) -> "SparseTensor":
        """A tensor on the same voxels with new features (no checks, no copies)."""
        out = SparseTensor.__new__(SparseTensor)
        out.features, out.stride, out.maps = features, self.stride, self.maps
        return out

    def __repr__(self) -> str:
        return (f"SparseTensor({len(self)} voxels, {self.features.shape[1]} channels, "
                f"stride {self.stride}, {self.features.dtype}, {self.device})")


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate channels of tensors on the same voxels (the UNet skip connections)."""
    first = tensors[0]
    for t in tensors[1:]:
        if t.maps is not first.maps or t.stride != first.stride:
            raise CoordinateError(f"cat needs tensors on the same voxels; got strides "
                                  f"{[x.stride for x in tensors]} or different inputs")
    return first.replace(torch.cat([t.features for t in tensors], 1))


def to_points(voxels: SparseTensor | Tensor, point_to_voxel: Tensor) -> Tensor:
    """Per-point features: row ``point_to_voxel[i]`` of the voxel features for point ``i``."""
    features = voxels.features if isinstance(voxels, SparseTensor) else voxels
    if len(point_to_voxel) and (int(point_to_voxel.min()) < 0 or int(point_to_voxel.max()) >= len(features)):
        raise IndexError(f"point_to_voxel has indices outside 0..{len(features) - 1}")
    return features.index_select(0, point_to_voxel.to(device=features.device, dtype=torch.int64))
