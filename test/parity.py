"""Shared by the backend parity tests (test_minkowski_parity.py, test_spconv_parity.py): the same
weights and input in two backends, every output and gradient compared per tensor.

Agreement is ``max|ours - ref| <= RTOL * max|ref|``. Rows are aligned by coordinates, since a
backend may order the voxels of a strided level its own way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest
import torch

from ssen_ros.models import build_network, load_checkpoint
from ssen_ros.sparse import SparseTensor

RTOL = 1e-4

Native = Callable[[torch.Tensor, torch.Tensor], Any]
"""(coords, features) -> a backend's input tensor."""


def assert_rel_close(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    scale = ref.abs().max().item()
    err = (ours - ref).abs().max().item()
    assert err <= RTOL * max(scale, 1e-12), f"{what}: max error {err:.3g} vs max value {scale:.3g}"


def scene(n: int = 3000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of surface-like voxels (a floor, a wall, a tilted plane) with 3 features."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for b in range(2):
        u = torch.randint(0, 40, (n, 2), generator=g)
        zero = torch.zeros(n, 1, dtype=torch.long)
        parts += [torch.cat([zero + b, u, zero], 1), torch.cat([zero + b, u[:, :1], zero, u[:, 1:]], 1),
                  torch.cat([zero + b, u, u[:, :1] // 2], 1)]
    coords = torch.unique(torch.cat(parts), dim=0)
    coords = coords[torch.randperm(len(coords), generator=g)].int()
    return coords, torch.randn(len(coords), 3, generator=g)


def order(coords: torch.Tensor) -> torch.Tensor:
    """Row permutation sorting (batch, x, y, z) lexicographically (to align the backends' rows)."""
    c = coords.cpu().numpy()
    return torch.from_numpy(np.lexsort((c[:, 3], c[:, 2], c[:, 1], c[:, 0])))


def _coords(y: Any) -> torch.Tensor:
    """Stride-1 (batch, x, y, z) of a backend's tensor (MinkowskiEngine calls them ``C``)."""
    return y.coords if hasattr(y, "coords") else y.C


def run_both(layers, ref_layers, coords: torch.Tensor, feats: torch.Tensor, native: Native,
             ref_native: Native):
    """Forward a chain of layers in both backends; loss = sum(y * r) with r fixed per voxel.

    Returns, aligned by coordinates: outputs, input gradients, and (name, ours, ref) parameter
    gradients.
    """
    inputs, outputs = [], []
    for chain, make in ((layers, native), (ref_layers, ref_native)):
        x = feats.clone().requires_grad_()
        y = make(coords, x)
        for layer in chain:
            y = layer(y)
        inputs.append(x)
        outputs.append(y)
    rows = [order(_coords(y)) for y in outputs]
    assert torch.equal(_coords(outputs[0])[rows[0]].int(), _coords(outputs[1])[rows[1]].int()), \
        "output coordinates differ"
    r = torch.randn(outputs[0].features.shape, generator=torch.Generator().manual_seed(7))
    for y, o in zip(outputs, rows):
        (y.features[o] * r).sum().backward()
    params = zip(torch.nn.ModuleList(layers).named_parameters(),
                 torch.nn.ModuleList(ref_layers).named_parameters())
    return ((outputs[0].features[rows[0]].detach(), outputs[1].features[rows[1]].detach()),
            (inputs[0].grad, inputs[1].grad), [(name, p.grad, q.grad) for (name, p), (_, q) in params])


def sparse_input(coords: torch.Tensor, feats: torch.Tensor) -> SparseTensor:
    """The input of the torch backend's layers."""
    return SparseTensor(feats, coords)


@dataclass(frozen=True)
class Backends:
    """A backend's layer factories (``ops``) against a reference's, with their input makers."""

    ops: ModuleType
    ref: ModuleType
    native: Native
    ref_native: Native

    def twin(self, factory: str, *args: Any, **kwargs: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The same layer from both, with the reference's initial weights in both."""
        a, b = getattr(self.ops, factory)(*args, **kwargs), getattr(self.ref, factory)(*args, **kwargs)
        a.load_state_dict(b.state_dict())
        return a, b

    def check(self, layers: list, ref_layers: list, what: str) -> None:
        """Outputs, input gradients and every parameter gradient agree on :func:`scene`."""
        coords, feats = scene()
        (y, y_ref), (gx, gx_ref), grads = run_both(layers, ref_layers, coords, feats, self.native,
                                                   self.ref_native)
        assert_rel_close(y, y_ref, f"{what} forward")
        assert_rel_close(gx, gx_ref, f"{what} input gradient")
        assert grads
        for name, g, g_ref in grads:
            assert_rel_close(g, g_ref, f"{what} gradient of {name}")


class _ConvNormReluCat(torch.nn.Module):
    def __init__(self, ops: ModuleType, conv: torch.nn.Module, norm: torch.nn.Module) -> None:
        super().__init__()
        self.ops, self.conv, self.norm, self.relu = ops, conv, norm, ops.relu()

    def forward(self, x):
        y = self.conv(x)
        return self.ops.cat(self.relu(self.norm(y)), y)


class BackendParity:
    """The parity tests of a backend against a reference: a test module subclasses this, names the
    two (``backend``, ``ref_backend``) and gives it a ``backends`` fixture (a :class:`Backends`).

    Every op, forward and backward, in float32; the whole Res16UNet34C in float64, train and eval
    mode, forward and every gradient; a checkpoint of the reference loaded into the backend.
    """

    backend = ""
    ref_backend = ""

    @pytest.mark.parametrize("kernel_size", [3, 5])
    def test_submanifold_conv(self, backends: Backends, kernel_size: int) -> None:
        ours, ref = backends.twin("conv", 3, 8, kernel_size)
        backends.check([ours], [ref], f"conv k{kernel_size}")

    def test_one_by_one_conv_with_bias(self, backends: Backends) -> None:
        ours, ref = backends.twin("conv", 3, 5, 1, bias=True)
        backends.check([ours], [ref], "conv 1x1")

    def test_strided_conv_and_transpose(self, backends: Backends) -> None:
        d1, d1_ref = backends.twin("conv", 3, 6, 2, stride=2)
        d2, d2_ref = backends.twin("conv", 6, 6, 2, stride=2)
        u2, u2_ref = backends.twin("conv_tr", 6, 4)
        u1, u1_ref = backends.twin("conv_tr", 4, 2)
        backends.check([d1], [d1_ref], "strided conv")
        backends.check([d1, d2, u2, u1], [d1_ref, d2_ref, u2_ref, u1_ref], "strided + transposed convs")

    def test_batch_norm_relu_cat(self, backends: Backends) -> None:
        c, c_ref = backends.twin("conv", 3, 4, 3)
        n, n_ref = backends.twin("batch_norm", 4, 0.02)
        backends.check([_ConvNormReluCat(backends.ops, c, n)], [_ConvNormReluCat(backends.ref, c_ref, n_ref)],
                       "conv-bn-relu-cat")
        assert_rel_close(n.bn.running_var, n_ref.bn.running_var, "bn running variance")

    @pytest.mark.parametrize("train", [True, False])
    def test_res16unet34c(self, train: bool) -> None:
        coords, feats = scene(1500)
        assert_networks_agree(*twin_networks(self.backend, self.ref_backend, train), coords, feats,
                              torch.float64, gradients=True)

    def test_checkpoint_of_the_reference_loads(self, tmp_path: Path) -> None:
        check_checkpoint_loads(self.backend, self.ref_backend, tmp_path)


def check_checkpoint_loads(backend: str, ref_backend: str, folder: Path) -> None:
    """A checkpoint saved from the reference's network (trained BatchNorm statistics) loads into
    ``backend``'s and gives the same eval forward."""
    coords, feats = scene(1000, seed=4)
    ref = build_network("Res16UNet34C", 3, 20, backend=ref_backend)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        ref(SparseTensor(feats, coords))
    ref.eval()
    path = folder / f"{ref_backend}.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    net = load_checkpoint(build_network("Res16UNet34C", 3, 20, backend=backend), path).eval()
    with torch.no_grad():
        assert_rel_close(net(SparseTensor(feats, coords)).features,
                         ref(SparseTensor(feats, coords)).features, "loaded checkpoint forward")


def network_pass(model: torch.nn.Module, coords: torch.Tensor, feats: torch.Tensor, dtype: torch.dtype):
    """Output and gradients (input, then every parameter by name) of sum(y * r)."""
    model = model.to(dtype)
    x = feats.to(dtype).clone().requires_grad_()
    y = model(SparseTensor(x, coords)).features
    r = torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    (y * r).sum().backward()
    grads = [("input", x.grad)] + [(n, p.grad) for n, p in model.named_parameters()]
    model.zero_grad()
    return y.detach(), grads


def twin_networks(backend: str, ref_backend: str, train: bool):
    """Res16UNet34C (conv1 kernel 5) on two backends with the reference's initial weights."""
    ref = build_network("Res16UNet34C", 3, 20, conv1_kernel=5, backend=ref_backend).train(train)
    net = build_network("Res16UNet34C", 3, 20, conv1_kernel=5, backend=backend).train(train)
    net.load_state_dict(ref.state_dict())
    return net, ref


def assert_networks_agree(net: torch.nn.Module, ref: torch.nn.Module, coords: torch.Tensor,
                          feats: torch.Tensor, dtype: torch.dtype, gradients: bool) -> None:
    """The forward, and with ``gradients`` every gradient, of two networks agree."""
    (y, grads), (y_ref, grads_ref) = (network_pass(m, coords, feats, dtype) for m in (net, ref))
    assert_rel_close(y, y_ref, f"Res16UNet34C {dtype} forward")
    if gradients:
        for (name, g), (_, g_ref) in zip(grads, grads_ref):
            assert_rel_close(g, g_ref, f"Res16UNet34C gradient of {name}")
