"""Shared by the backend parity tests (test_minkowski_parity.py, test_spconv_parity.py): the same
weights and input in two backends, every output and gradient compared per tensor.

Agreement is ``max|ours - ref| <= RTOL * max|ref|``. Rows are aligned by coordinates, since a
backend may order the voxels of a strided level its own way.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ssen_ros.models import build_network
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


def twin(factory, ref_factory, *args, **kwargs):
    """The same layer from two backends, with the reference's initial weights in both."""
    a, b = factory(*args, **kwargs), ref_factory(*args, **kwargs)
    a.load_state_dict(b.state_dict())
    return a, b


def check(layers, ref_layers, coords: torch.Tensor, feats: torch.Tensor, what: str, native: Native,
          ref_native: Native) -> None:
    """Outputs, input gradients and every parameter gradient agree."""
    (y, y_ref), (gx, gx_ref), grads = run_both(layers, ref_layers, coords, feats, native, ref_native)
    assert_rel_close(y, y_ref, f"{what} forward")
    assert_rel_close(gx, gx_ref, f"{what} input gradient")
    assert grads
    for name, g, g_ref in grads:
        assert_rel_close(g, g_ref, f"{what} gradient of {name}")


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
