"""The spconv 2.3 backend: the same layer factories as the torch backend, on spconv's kernel maps
(``indice pairs``) and its gather-matmul-scatter convolution.

A peer to measure against (``python -m benchmarks sparse``), not a dependency: ``pip install
.[spconv]``; tested on the CPU build. The layers are the torch backend's, with the same parameters
(MinkowskiEngine's names and shapes), so one ``state_dict`` loads in every backend; a convolution
hands spconv its kernel in spconv's KRSC layout ``[out, kz, ky, kx, in]``. Indices are
``(batch, z, y, x)`` so that spconv's flattened kernel index runs x fastest, as
:func:`~ssen_ros.sparse.kernel_map.kernel_offsets` does. spconv needs non-negative indices in a
grid each stride-2 level halves exactly: they are shifted by a multiple of 16 (the coarsest
stride), which keeps MinkowskiEngine's ``floor(c / 2s)`` grouping.

spconv's CPU backward asks CUDA for a stream, so the gradients are computed here: the input's
by spconv's convolution on the swapped pairs, the kernel's by per-offset matmuls.

Importing this module raises ImportError when spconv is missing.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import torch
from spconv.core import ConvAlgo
from spconv.pytorch import ops
from torch import Tensor

from ssen_ros.sparse import torch_backend as tb
from ssen_ros.sparse.tensor import SparseTensor

__all__ = ["SpconvTensor", "conv", "conv_tr", "batch_norm", "relu", "cat", "add_", "to_native",
           "from_native"]

COARSEST_STRIDE = 16
"""The stride of the networks' deepest level (4 stride-2 stages)."""

batch_norm, relu, add_ = tb.batch_norm, tb.relu, tb.add_  # they only touch ``features``


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run spconv's ops on one thread, then restore torch's thread count.

    spconv 2.3.8's CPU scatter-add gives wrong sums when OpenMP runs it on more than one thread
    (even into distinct rows), so every convolution would be wrong on a multi-core default.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class _Pairs:
    """One kernel map: spconv's ``indice_pairs`` (2, K, n) and ``counts`` (K,), and row counts;
    ``inverse`` runs it from its outputs back to its inputs."""

    pairs: Tensor
    counts: Tensor
    num_in: int
    num_out: int
    subm: bool
    inverse: bool = False

    def transposed(self) -> "_Pairs":
        return replace(self, inverse=not self.inverse)

    def offsets(self) -> Iterator[tuple[int, Tensor, Tensor]]:
        """``(k, input rows, output rows)`` for every kernel offset with pairs (not inverted).

        A submanifold map stores only the offsets before the centre; offset ``K-1-k`` has the
        same pairs as ``k``, swapped, and the centre pairs every row with itself.
        """
        volume = self.pairs.shape[1]
        counts = self.counts.tolist()
        for k in range(volume):
            if self.subm and k >= volume // 2:
                if k == volume // 2:
                    rows = torch.arange(self.num_in)
                    yield k, rows, rows
                    continue
                src, dst, n = 1, 0, counts[volume - 1 - k]
                pairs = self.pairs[:, volume - 1 - k]
            else:
                src, dst, n = 0, 1, counts[k]
                pairs = self.pairs[:, k]
            if n:
                yield k, pairs[src, :n].long(), pairs[dst, :n].long()


class _Grid:
    """The voxels of one input at every stride, in spconv's form, and their cached kernel maps."""

    def __init__(self, coords: Tensor) -> None:
        xyz = coords[:, 1:].long()
        self.origin = torch.div(xyz.amin(0), COARSEST_STRIDE, rounding_mode="floor") * COARSEST_STRIDE
        zyx = (xyz - self.origin).flip(1)
        extent = torch.div(zyx.amax(0) + COARSEST_STRIDE, COARSEST_STRIDE, rounding_mode="floor")
        self.shape = (extent * COARSEST_STRIDE).tolist()
        self.batch_size = int(coords[:, 0].max()) + 1
        self.indices = {1: torch.cat([coords[:, :1].long(), zyx], 1).int().contiguous()}
        self._maps: dict[tuple, _Pairs] = {}

    def coords(self, stride: int) -> Tensor:
        """(N, 4) int32 (batch, x, y, z) of the voxels at ``stride``, in stride-1 units."""
        idx = self.indices[stride].long()
        return torch.cat([idx[:, :1], idx[:, 1:].flip(1) * stride + self.origin], 1).int()

    def _pairs(self, stride: int, kernel: int, subm: bool) -> tuple[Tensor, _Pairs]:
        indices = self.indices[stride]
        shape = [s // stride for s in self.shape]
        with _one_thread():
            out, pairs, counts = ops.get_indice_pairs(
                indices, self.batch_size, shape, ConvAlgo.Native, [kernel] * 3, [1 if subm else 2] * 3,
                [kernel // 2 if subm else 0] * 3, [1] * 3, [0] * 3, subm, False)
        return out, _Pairs(pairs, counts, len(indices), len(out), subm)

    def submanifold(self, stride: int, kernel: int) -> _Pairs:
        """The map of an odd ``kernel`` from the voxels at ``stride`` onto themselves."""
        key = ("subm", stride, kernel)
        if key not in self._maps:
            self._maps[key] = self._pairs(stride, kernel, True)[1]
        return self._maps[key]

    def downsample(self, stride: int) -> _Pairs:
        """The kernel-2 stride-2 map from ``stride`` to ``2 * stride`` (which it defines)."""
        key = ("down", stride)
        if key not in self._maps:
            self.indices[2 * stride], self._maps[key] = self._pairs(stride, 2, False)
        return self._maps[key]


class SpconvTensor:
    """Features (N, C) on the voxels at ``stride`` of a :class:`_Grid` (its ``maps``), built like a
    :class:`SparseTensor` from maps."""

    __slots__ = ("features", "stride", "maps")

    def __init__(self, features: Tensor, *, stride: int, maps: _Grid) -> None:
        self.features, self.stride, self.maps = features, stride, maps

    @property
    def coords(self) -> Tensor:
        return self.maps.coords(self.stride)

    def replace(self, features: Tensor) -> "SpconvTensor":
        return SpconvTensor(features, stride=self.stride, maps=self.maps)


def _krsc(kernel: Tensor) -> Tensor:
    """A [K³, in, out] kernel in spconv's [out, K, K, K, in] layout."""
    volume, cin, cout = kernel.shape
    side = round(volume ** (1 / 3))
    return kernel.permute(2, 0, 1).reshape(cout, side, side, side, cin).contiguous()


def _spconv(x: Tensor, kernel: Tensor, kmap: _Pairs) -> Tensor:
    """``out[o] = sum x[i] @ kernel[k]`` over the pairs (i, o, k) of ``kmap``."""
    with _one_thread():
        return ops.indice_conv(x.contiguous(), _krsc(kernel), kmap.pairs, kmap.counts,
                               kmap.num_in if kmap.inverse else kmap.num_out, kmap.inverse, kmap.subm)


def _weight_grad(x: Tensor, grad: Tensor, kmap: _Pairs, shape: torch.Size) -> Tensor:
    """``dW[k] = x[in_rows].T @ grad[out_rows]`` per offset (spconv's CPU backward needs CUDA)."""
    gw = x.new_zeros(shape)
    for k, rows_in, rows_out in kmap.offsets():
        if kmap.inverse:
            rows_in, rows_out = rows_out, rows_in
        gw[k] = x[rows_in].t() @ grad[rows_out]
    return gw


_ConvFunction = tb.map_conv_function(_spconv, _weight_grad)


class _OnSpconv:
    """The torch backend's convolution layers, run by spconv on its maps."""

    apply_map = staticmethod(_ConvFunction.apply)
    tensor = SpconvTensor


class Convolution(_OnSpconv, tb.Convolution):
    """Submanifold (odd kernel, stride 1), 1×1, or kernel 2 stride 2."""


class ConvolutionTranspose(_OnSpconv, tb.ConvolutionTranspose):
    """Kernel-2 stride-2 transposed convolution: the matching downsampling map, inverted."""


conv, conv_tr = Convolution, ConvolutionTranspose  # the factories' signatures are the classes'


def cat(*tensors: SpconvTensor) -> SpconvTensor:
    """Concatenate channels of tensors on the same voxels (the UNet skip connections)."""
    first = tensors[0]
    if any(t.maps is not first.maps or t.stride != first.stride for t in tensors[1:]):
        raise ValueError("cat needs tensors on the same voxels")
    return first.replace(torch.cat([t.features for t in tensors], 1))


def to_native(x: SparseTensor) -> SpconvTensor:
    """The (stride-1) network input on a new grid; rows keep their order."""
    return SpconvTensor(x.features, stride=1, maps=_Grid(x.coords))


def from_native(y: SpconvTensor, x_native: SpconvTensor, x: SparseTensor) -> SparseTensor:
    """``y`` is on the input's voxels in the input's row order."""
    return x.replace(y.features)
