"""The MinkowskiEngine 0.5.4 backend: the same layer factories as the torch backend.

MinkowskiEngine's own modules already carry the parameter names and shapes that checkpoints
use (``kernel`` [K³, in, out] or [in, out] for 1×1, ``bias`` [1, out], BatchNorm as ``.bn``),
and :mod:`ssen_ros.sparse.kernel_map` follows its kernel-offset order, so the factories return
them unchanged. Tensors cross the boundary in :func:`to_native` / :func:`from_native`.

Importing this module raises ImportError when MinkowskiEngine is missing or broken. On
Python >= 3.10 MinkowskiEngine 0.5.4 only imports after the ``collections.abc`` fix that
``scripts/build_minkowski.sh`` applies to the installed files.
"""
from __future__ import annotations

import MinkowskiEngine as ME
from torch import nn

from ssen_ros.sparse.tensor import SparseTensor

__all__ = ["conv", "conv_tr", "batch_norm", "relu", "cat", "add_", "to_native", "from_native"]


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
         bias: bool = False) -> nn.Module:
    return ME.MinkowskiConvolution(in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                                   bias=bias, dimension=3)


def conv_tr(in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2,
            bias: bool = False) -> nn.Module:
    return ME.MinkowskiConvolutionTranspose(in_channels, out_channels, kernel_size=kernel_size,
                                            stride=stride, bias=bias, dimension=3)


def batch_norm(num_features: int, momentum: float = 0.1) -> nn.Module:
    return ME.MinkowskiBatchNorm(num_features, momentum=momentum)


def relu() -> nn.Module:
    return ME.MinkowskiReLU(inplace=True)


def cat(*tensors: ME.SparseTensor) -> ME.SparseTensor:
    return ME.cat(*tensors)


def add_(a: ME.SparseTensor, b: ME.SparseTensor) -> ME.SparseTensor:
    """``a += b`` (the residual connection)."""
    a += b
    return a


def to_native(x: SparseTensor) -> ME.SparseTensor:
    """An ME tensor on the same voxels; ME may reorder rows (undone by :func:`from_native`)."""
    return ME.SparseTensor(x.features, coordinates=x.coords.int(),
                           quantization_mode=ME.SparseTensorQuantizationMode.RANDOM_SUBSAMPLE)


def from_native(y: ME.SparseTensor, x_native: ME.SparseTensor, x: SparseTensor) -> SparseTensor:
    """``y`` (on ``x_native``'s voxels) as a tensor with ``x``'s row order."""
    return x.replace(y.F[x_native.inverse_mapping.long()])
