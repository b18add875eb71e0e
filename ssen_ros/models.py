"""The SSEN networks: the Res16UNet family, its semantic and embedding heads, checkpoint loading.

Paper §III-A: both networks are a MinkowskiEngine ``Res16UNet34C`` on 2 cm voxels with RGB
input; the semantic network ends in 20 class logits, the embedding network in a d=8 vector.
The structure and every parameter name follow chrischoy/SpatioTemporalSegmentation
``models/res16unet.py`` (also used by the authors' ``models/unet.py`` and MinkowskiEngine's
``examples/minkunet.py``), so checkpoints such as ``MinkUNet34C-train-conv1-5.pth`` load:
``conv0p1s1.kernel``, ``bn0.bn.weight``, ``conv1p1s2.kernel``, ``block1.0.conv1.kernel``,
``block1.0.norm1.bn.running_mean``, ``block5.0.downsample.0.kernel``, ``convtr4p16s2.kernel``,
``bntr4.bn.weight``, ..., ``final.kernel``, ``final.bias``.

As in the reference code, ``bn_momentum`` (0.02) applies to the stem, stride, transposed and
downsample norms, while the norms inside residual blocks keep ``BLOCK_BN_MOMENTUM`` = 0.1,
because the reference ``_make_layer`` does not pass the momentum on to its blocks.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ssen_ros.sparse import SparseTensor, get_backend, resolve_backend

__all__ = ["ARCHITECTURES", "Architecture", "BasicBlock", "Res16UNet", "SemanticNet", "EmbeddingNet",
           "build_network", "load_checkpoint", "CheckpointError", "NUM_CLASSES", "EMBEDDING_DIM"]

NUM_CLASSES = 20
EMBEDDING_DIM = 8
BLOCK_BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class Architecture:
    """Residual blocks per stage and channels per stage (4 down, 4 up), plus the stem width."""

    layers: tuple[int, ...]
    planes: tuple[int, ...]
    init_dim: int = 32


_L14, _L18, _L34 = (1,) * 8, (2,) * 8, (2, 3, 4, 6, 2, 2, 2, 2)
ARCHITECTURES: dict[str, Architecture] = {
    # the reference family (SpatioTemporalSegmentation res16unet.py)
    "Res16UNet14": Architecture(_L14, (32, 64, 128, 256, 256, 256, 256, 256)),
    "Res16UNet14A": Architecture(_L14, (32, 64, 128, 256, 128, 128, 96, 96)),
    "Res16UNet14B": Architecture(_L14, (32, 64, 128, 256, 128, 128, 128, 128)),
    "Res16UNet14C": Architecture(_L14, (32, 64, 128, 256, 192, 192, 128, 128)),
    "Res16UNet18": Architecture(_L18, (32, 64, 128, 256, 256, 256, 256, 256)),
    "Res16UNet18A": Architecture(_L18, (32, 64, 128, 256, 128, 128, 96, 96)),
    "Res16UNet18B": Architecture(_L18, (32, 64, 128, 256, 128, 128, 128, 128)),
    "Res16UNet34": Architecture(_L34, (32, 64, 128, 256, 256, 256, 256, 256)),
    "Res16UNet34A": Architecture(_L34, (32, 64, 128, 256, 256, 128, 64, 64)),
    "Res16UNet34B": Architecture(_L34, (32, 64, 128, 256, 256, 128, 64, 32)),
    "Res16UNet34C": Architecture(_L34, (32, 64, 128, 256, 256, 128, 96, 96)),
    # ours: a narrow 14-layer member (~0.9M parameters) for CPU-only robots and demo weights
    "Res16UNet14S": Architecture(_L14, (16, 32, 48, 64, 48, 48, 32, 32), init_dim=16),
}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the network (missing/unexpected keys, shape mismatches)."""


class BasicBlock(nn.Module):
    """conv3-norm-relu-conv3-norm, plus the (optionally projected) input, then relu."""

    def __init__(self, ops, inplanes: int, planes: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = ops.conv(inplanes, planes, 3)
        self.norm1 = ops.batch_norm(planes, BLOCK_BN_MOMENTUM)
        self.conv2 = ops.conv(planes, planes, 3)
        self.norm2 = ops.batch_norm(planes, BLOCK_BN_MOMENTUM)
        self.relu = ops.relu()
        self.downsample = downsample
        self._add = ops.add_

    def forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self._add(out, residual))


class Res16UNet(nn.Module):
    """A Res16UNet of the named architecture: stem, 4 stride-2 stages, 4 transposed stages, 1×1 head.

    ``forward`` takes a stride-1 :class:`SparseTensor` and returns one with ``out_channels``
    features per input voxel, rows in the input's order, whichever backend runs it.
    """

    def __init__(self, arch: str, in_channels: int, out_channels: int, conv1_kernel: int = 3,
                 bn_momentum: float = 0.02, backend: str = "auto") -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        if conv1_kernel not in (3, 5):
            raise ValueError(f"conv1_kernel must be 3 or 5, got {conv1_kernel}")
        self.arch, self.in_channels, self.out_channels = arch, in_channels, out_channels
        self.backend = resolve_backend(backend)
        ops = self._ops
        a = ARCHITECTURES[arch]
        self.inplanes = a.init_dim
        self.conv0p1s1 = ops.conv(in_channels, a.init_dim, conv1_kernel)
        self.bn0 = ops.batch_norm(a.init_dim, bn_momentum)
        for i, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2")):
            setattr(self, name, ops.conv(self.inplanes, self.inplanes, 2, stride=2))
            setattr(self, f"bn{i + 1}", ops.batch_norm(self.inplanes, bn_momentum))
            setattr(self, f"block{i + 1}", self._make_layer(ops, a.planes[i], a.layers[i], bn_momentum))
        skips = (a.planes[2], a.planes[1], a.planes[0], a.init_dim)
        for i, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")):
            planes = a.planes[4 + i]
            setattr(self, name, ops.conv_tr(self.inplanes, planes, 2, stride=2))
            setattr(self, f"bntr{4 + i}", ops.batch_norm(planes, bn_momentum))
            self.inplanes = planes + skips[i]
            setattr(self, f"block{5 + i}", self._make_layer(ops, planes, a.layers[4 + i], bn_momentum))
        self.final = ops.conv(a.planes[7], out_channels, 1, bias=True)
        self.relu = ops.relu()
        del self.inplanes

    @property
    def _ops(self):
        return get_backend(self.backend)

    def _make_layer(self, ops, planes: int, blocks: int, bn_momentum: float) -> nn.Sequential:
        downsample = None
        if self.inplanes != planes:
            downsample = nn.Sequential(ops.conv(self.inplanes, planes, 1),
                                       ops.batch_norm(planes, bn_momentum))
        layers = [BasicBlock(ops, self.inplanes, planes, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(ops, planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: SparseTensor) -> SparseTensor:
        ops = self._ops
        native = ops.to_native(x)
        out = self.relu(self.bn0(self.conv0p1s1(native)))
        skips = [out]
        for i, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2"), start=1):
            out = self.relu(getattr(self, f"bn{i}")(getattr(self, name)(out)))
            out = getattr(self, f"block{i}")(out)
            skips.append(out)
        skips.pop()
        for i, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2"), start=4):
            out = self.relu(getattr(self, f"bntr{i}")(getattr(self, name)(out)))
            out = getattr(self, f"block{i + 1}")(ops.cat(out, skips.pop()))
        return ops.from_native(self.final(out), native, x)


class SemanticNet(Res16UNet):
    """Per-voxel logits over the 20 ScanNet classes (paper §III-A, the semantic network)."""

    def __init__(self, arch: str = "Res16UNet34C", in_channels: int = 3, num_classes: int = NUM_CLASSES,
                 **kwargs) -> None:
        super().__init__(arch, in_channels, num_classes, **kwargs)


class EmbeddingNet(Res16UNet):
    """Per-voxel d-dimensional instance embeddings (paper §III-A, d=8)."""

    def __init__(self, arch: str = "Res16UNet34C", in_channels: int = 3, embedding_dim: int = EMBEDDING_DIM,
                 **kwargs) -> None:
        super().__init__(arch, in_channels, embedding_dim, **kwargs)


def build_network(arch: str, in_channels: int, out_channels: int, conv1_kernel: int = 3,
                  bn_momentum: float = 0.02, backend: str = "auto") -> Res16UNet:
    """A Res16UNet by architecture name (see ``ARCHITECTURES``) on the chosen backend."""
    return Res16UNet(arch, in_channels, out_channels, conv1_kernel, bn_momentum, backend)


def load_checkpoint(model: nn.Module, path_or_state: str | os.PathLike | Mapping[str, Tensor],
                    drop_final: bool = False) -> nn.Module:
    """Load weights saved by either backend or by the reference code into ``model``.

    Accepts a file or a mapping, either ``{'state_dict': ...}`` or a bare state dict, strips
    DataParallel ``module.`` prefixes and accepts MinkowskiEngine 0.4's [1, in, out] 1x1 kernels. ``drop_final`` skips the checkpoint's ``final.*`` layer
    and keeps the model's own (how the embedding net starts from a semantic checkpoint).
    Raises :class:`CheckpointError` naming every missing, unexpected or mis-shaped key; a missing
    ``num_batches_tracked`` counter (older checkpoints) is not an error.
    """
    source = str(path_or_state) if isinstance(path_or_state, (str, os.PathLike)) else "state dict"
    state = path_or_state
    if not isinstance(state, Mapping):
        state = torch.load(state, map_location="cpu", weights_only=True)
    if isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    if drop_final:
        state = {k: v for k, v in state.items() if not k.startswith("final.")}
    own = model.state_dict()
    # MinkowskiEngine 0.4 (the SpatioTemporalSegmentation checkpoints) kept 1x1 kernels as
    # [1, in, out]; 0.5 and this code keep [in, out].
    state = {k: v[0] if k in own and v.dim() == 3 and v.shape[0] == 1 and v.shape[1:] == own[k].shape
             else v for k, v in state.items()}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not (drop_final and k.startswith("final."))]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        lines = [f"checkpoint {source} does not fit {type(model).__name__}"
                 f"({getattr(model, 'arch', '')}):"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items))
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=False)
    return model
