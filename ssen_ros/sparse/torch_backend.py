"""Sparse convolution in plain PyTorch: no compiler, CPU and CUDA, autograd (paper §III-A nets).

Every convolution here is one primitive over a :class:`~ssen_ros.sparse.kernel_map.KernelMap`:
``out[o] = sum over pairs (i, o, k) of x[i] @ W[k]``. Submanifold convolutions (kernel 3 or
5) add the centre offset as a plain ``x @ W[centre]`` (its map is the identity); a kernel-2
stride-2 convolution and its transpose use the down-sampling map, in which every fine voxel
has exactly one coarse partner.

Speed and memory (measured by ``python -m benchmarks sparse``):
- output rows are processed in tiles of a few MB of pairs: one gather of the inputs, one
  matmul per offset, then ``embedding_bag`` sums each output row's products and the centre
  matmul is added as the tile is written (no serial scatter-add; each output row written
  once). Scratch memory is reused (a fresh large tensor per op costs page faults that rival
  the matmul);
- :class:`KernelConvFunction` saves only the input and weight, and gathers again in backward
  (autograd on the naive version kept every gathered matrix, many times the network's memory);
- the input gradient is the same primitive on the transposed map with transposed weights;
- on the CPU, :func:`set_tile_workers` shares the tiles out to threads, each running its ops
  single-threaded (cheaper than OpenMP's per-op thread wake-ups on these small ops).

Parameter names and shapes match MinkowskiEngine (``kernel`` [K³, in, out] or [in, out] for
1×1, ``bias`` [1, out]; BatchNorm as ``.bn``), so one ``state_dict`` loads in either backend.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssen_ros.sparse.kernel_map import KernelMap
from ssen_ros.sparse.tensor import SparseTensor, cat

__all__ = ["Convolution", "ConvolutionTranspose", "BatchNorm", "ReLU", "cat", "add_", "conv", "conv_tr",
           "batch_norm", "relu", "to_native", "from_native", "kernel_conv", "map_conv_function",
           "set_tile_workers", "tile_workers"]

TILE_PAIRS = 16384
"""Pairs per tile for layers wider than ``NARROW_CHANNELS`` (twice as many for narrower ones).
Larger tiles mean fewer ops, each with a fixed cost in Python and dispatch; smaller ones stay
in cache (16k pairs x 96 channels x 4 bytes = 6 MB); narrow layers gain from fewer, larger ops
(docs/measurements.md). A kernel map is tiled once per size it is used with."""
NARROW_CHANNELS = 64


def tile_pairs(cin: int, cout: int) -> int:
    """Pairs per tile of a convolution from ``cin`` to ``cout`` channels."""
    return 2 * TILE_PAIRS if max(cin, cout) <= NARROW_CHANNELS else TILE_PAIRS

_workspace = threading.local()


def _buffers(rows: int, *cols: int, like: Tensor) -> list[Tensor]:
    """Reused contiguous scratch matrices (rows, c) for each c in ``cols``, per thread/device/dtype.

    Writing into reused memory avoids the page faults of a fresh large tensor per tile.
    """
    pool = _workspace.__dict__.setdefault("pool", {})
    need = rows * sum(cols)
    # tensors made under inference_mode cannot be written outside it, so each mode has its own
    key = (like.device, like.dtype, torch.is_inference_mode_enabled())
    flat = pool.get(key)
    if flat is None or flat.numel() < need:
        flat = torch.empty(need, device=like.device, dtype=like.dtype)
        pool[key] = flat
    views, start = [], 0
    for c in cols:
        views.append(flat[start:start + rows * c].view(rows, c))
        start += rows * c
    return views


def _gather_mm_scatter(x: Tensor, weights: Tensor, kmap: KernelMap) -> Tensor:
    """``out[o] = sum_k x[i] @ weights[k]`` over the pairs (i, o) of ``kmap``, tile by tile.

    On the CPU with :func:`set_tile_workers` > 1, the tiles are shared out to that many threads
    (each writes its own output rows, so no locks).
    """
    out = x.new_empty(kmap.num_out, weights.shape[2])
    tiles = kmap.tiles(tile_pairs(weights.shape[1], weights.shape[2]))
    workers = _tile_workers.count if x.device.type == "cpu" else 1
    if workers < 2 or len(tiles) < 2:
        _conv_tiles(x, weights, kmap, tiles, out)
        return out
    share = math.ceil(len(tiles) / workers)
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def run(part: list) -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):  # modes are per thread
            _conv_tiles(x, weights, kmap, part, out)

    pending = [_tile_workers.pool.submit(run, tiles[a:a + share]) for a in range(share, len(tiles), share)]
    _conv_tiles(x, weights, kmap, tiles[:share], out)
    for job in pending:
        job.result()
    return out


def _conv_tiles(x: Tensor, weights: Tensor, kmap: KernelMap, tiles: list, out: Tensor) -> None:
    """The convolution's output rows of ``tiles``, written into ``out``."""
    cin, cout = weights.shape[1], weights.shape[2]
    center = kmap.center
    gather, product = _buffers(tile_pairs(cin, cout) + kmap.volume, cin, cout, like=x)
    for tile in tiles:
        n = tile.num_pairs
        if n:
            g = torch.index_select(x, 0, tile.in32, out=gather[:n])
            y = product[:n]
            for k, a, b in tile.segments:
                torch.mm(g[a:b], weights[k], out=y[a:b])
            summed = F.embedding_bag(tile.bag, y, tile.bag_offsets, mode="sum")
        else:
            summed = x.new_zeros(tile.stop - tile.start, cout)
        if center is None:
            out[tile.start:tile.stop] = summed
        else:
            torch.addmm(summed, x[tile.start:tile.stop], weights[center], out=out[tile.start:tile.stop])


class _TileWorkers:
    """The threads that share a CPU convolution's tiles (see :func:`set_tile_workers`)."""

    def __init__(self) -> None:
        self.count = 1
        self.pool: ThreadPoolExecutor | None = None


_tile_workers = _TileWorkers()


def tile_workers() -> int:
    """How many threads share a CPU convolution's tiles."""
    return _tile_workers.count


def set_tile_workers(count: int) -> None:
    """Share each CPU convolution's tiles out to ``count`` threads (1: the caller alone).

    Give torch one intra-op thread (``torch.set_num_threads(1)``) when using this: the tiles
    then run in parallel while every op inside runs single-threaded. That avoids the wake-up of
    OpenMP's threads at each of the thousands of small ops per forward, which with
    ``OMP_WAIT_POLICY=PASSIVE`` made 2 intra-op threads slower than one (``python -m benchmarks sparse``).
    The weight gradient (training) stays in the calling thread.
    """
    if count < 1:
        raise ValueError(f"tile workers must be >= 1, got {count}")
    if count != _tile_workers.count:
        if _tile_workers.pool is not None:
            _tile_workers.pool.shutdown()
        _tile_workers.pool = (ThreadPoolExecutor(count - 1, thread_name_prefix="ssen-tiles")
                              if count > 1 else None)
        _tile_workers.count = count


def _weight_grad(x: Tensor, grad: Tensor, kmap: KernelMap, shape: torch.Size) -> Tensor:
    """``dW[k] = x[in_rows].T @ grad[out_rows]``, tile by tile, gathering again from x and grad."""
    gw = grad.new_zeros(shape)
    center = kmap.center
    if center is not None:
        torch.mm(x.t(), grad, out=gw[center])
    cin, cout = x.shape[1], grad.shape[1]
    rows = tile_pairs(cin, cout)
    xs, gs = _buffers(rows + kmap.volume, cin, cout, like=x)
    for tile in kmap.tiles(rows):
        n = tile.num_pairs
        if n:
            xi = torch.index_select(x, 0, tile.in32, out=xs[:n])
            go = torch.index_select(grad, 0, tile.out_rows, out=gs[:n])
            for k, a, b in tile.segments:
                gw[k].addmm_(xi[a:b].t(), go[a:b])
    return gw


def map_conv_function(conv: Callable[[Tensor, Tensor, Any], Tensor],
                      weight_grad: Callable[[Tensor, Tensor, Any, torch.Size], Tensor]) -> type:
    """An autograd Function ``y = conv(x, W, kmap)`` whose backward gathers again instead of saving
    gathers: the input gradient is ``conv`` of the output gradient with ``W`` transposed over
    ``kmap.transposed()``, the weight's ``weight_grad(x, grad, kmap, W.shape)``."""

    class MapConvFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: Tensor, weight: Tensor, kmap) -> Tensor:  # type: ignore[override]
            ctx.kmap = kmap
            ctx.save_for_backward(x, weight)
            return conv(x.contiguous(), weight, kmap)

        @staticmethod
        def backward(ctx, grad: Tensor):  # type: ignore[override]
            x, weight = ctx.saved_tensors
            grad = grad.contiguous()
            gx = gw = None
            if ctx.needs_input_grad[0]:
                gx = conv(grad, weight.transpose(1, 2), ctx.kmap.transposed())
            if ctx.needs_input_grad[1]:
                gw = weight_grad(x.contiguous(), grad, ctx.kmap, weight.shape)
            return gx, gw, None

    return MapConvFunction


KernelConvFunction = map_conv_function(_gather_mm_scatter, _weight_grad)
"""``y = conv(x, W)`` over a :class:`KernelMap`, tiled (see the module docstring)."""


def kernel_conv(x: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """Features (num_out, C_out) of the convolution of ``x`` (num_in, C_in) over ``kmap``."""
    return KernelConvFunction.apply(x, weight, kmap)


class Convolution(nn.Module):
    """Sparse convolution: submanifold (odd kernel, stride 1), 1×1, or kernel 2 stride 2.

    ``apply_map(features, kernel, kernel map)`` runs it and ``tensor`` holds its output: another
    backend's layers subclass this with their own.
    """

    transposed = False
    apply_map = staticmethod(kernel_conv)
    tensor = SparseTensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = False) -> None:
        super().__init__()
        if not ((stride == 1 and kernel_size % 2 == 1) or (kernel_size == 2 and stride == 2)):
            raise ValueError(f"supported: odd kernel with stride 1, or kernel 2 stride 2; "
                             f"got kernel {kernel_size} stride {stride}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        volume = kernel_size ** 3
        shape = (in_channels, out_channels) if volume == 1 else (volume, in_channels, out_channels)
        self.kernel = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(1, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MinkowskiEngine's initialisation: uniform in ±1/sqrt(fan), fan = K³ x in (or out)."""
        fan = self.kernel_size ** 3 * (self.out_channels if self.transposed else self.in_channels)
        bound = 1.0 / math.sqrt(fan)
        with torch.no_grad():
            self.kernel.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.kernel.dim() == 2:
            y = x.features @ self.kernel
            stride = x.stride
        elif self.stride == 1:
            y = self.apply_map(x.features, self.kernel, x.maps.submanifold(x.stride, self.kernel_size))
            stride = x.stride
        else:
            y = self.apply_map(x.features, self.kernel, x.maps.downsample(x.stride))
            stride = 2 * x.stride
        if self.bias is not None:
            y = y + self.bias
        return self.tensor(y, stride=stride, maps=x.maps)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, bias={self.bias is not None}")


class ConvolutionTranspose(Convolution):
    """Kernel-2 stride-2 transposed convolution back onto the finer voxels of the same input."""

    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2,
                 bias: bool = False) -> None:
        if (kernel_size, stride) != (2, 2):
            raise ValueError(f"transposed convolution supports kernel 2 stride 2, got {kernel_size}, {stride}")
        super().__init__(in_channels, out_channels, kernel_size, stride, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.stride < 2:
            raise ValueError(f"transposed convolution needs a stride >= 2 input, got stride {x.stride}")
        fine = x.stride // 2
        y = self.apply_map(x.features, self.kernel, x.maps.downsample(fine).transposed())
        if self.bias is not None:
            y = y + self.bias
        return self.tensor(y, stride=fine, maps=x.maps)


class BatchNorm(nn.Module):
    """BatchNorm over voxels; the inner ``bn`` keeps MinkowskiEngine's parameter names.

    In eval mode without autograd it normalises the features in place (one fused pass, no new
    tensor): in the networks its input is always a fresh convolution output.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum)

    def forward(self, x: SparseTensor) -> SparseTensor:
        bn = self.bn
        if bn.training or torch.is_grad_enabled() or bn.running_var is None:
            return x.replace(bn(x.features))
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        return x.replace(torch.addcmul(shift, x.features, scale, out=x.features))


class ReLU(nn.Module):
    """In-place ReLU on the features, as MinkowskiReLU(inplace=True) in the reference nets."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(torch.relu_(x.features))


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
         bias: bool = False) -> Convolution:
    return Convolution(in_channels, out_channels, kernel_size, stride, bias)


def conv_tr(in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2,
            bias: bool = False) -> ConvolutionTranspose:
    return ConvolutionTranspose(in_channels, out_channels, kernel_size, stride, bias)


def batch_norm(num_features: int, momentum: float = 0.1) -> BatchNorm:
    return BatchNorm(num_features, momentum)


def relu() -> ReLU:
    return ReLU()


def add_(a: SparseTensor, b: SparseTensor) -> SparseTensor:
    """``a += b`` on the features (the residual connection)."""
    a.features += b.features
    return a


def to_native(x: SparseTensor) -> SparseTensor:
    """This backend works on :class:`SparseTensor` directly."""
    return x


def from_native(y: SparseTensor, x_native: SparseTensor, x: SparseTensor) -> SparseTensor:
    """The output rows are already in the input's order."""
    return y
