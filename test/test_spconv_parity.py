"""Parity of the spconv backend with the torch backend: same weights, same input, same numbers.

Every op in float32, forward and backward (input and weight gradients); the whole Res16UNet34C
in float64, train and eval mode, forward and backward; a torch-backend checkpoint loaded into
the spconv network; and the same sums with torch on several threads (spconv's CPU scatter-add
is wrong there, so the backend runs it on one). Agreement is ``max|spconv - torch| <= 1e-4 *
max|torch|`` per tensor. Skipped, with the import error, where spconv is not installed
(``pip install .[spconv]``).
"""
from __future__ import annotations

import pytest
import torch

from parity import assert_networks_agree, assert_rel_close, check, scene, twin, twin_networks
from ssen_ros.models import build_network, load_checkpoint
from ssen_ros.sparse import SparseTensor, backend_available
from ssen_ros.sparse import torch_backend as tb

_OK, _WHY = backend_available("spconv")
pytestmark = pytest.mark.skipif(not _OK, reason=f"spconv does not import: {_WHY}")

if _OK:
    from ssen_ros.sparse import spconv_backend as sb


def spconv_input(coords: torch.Tensor, feats: torch.Tensor) -> "sb.SpconvTensor":
    return sb.to_native(SparseTensor(feats, coords))


def torch_input(coords: torch.Tensor, feats: torch.Tensor) -> SparseTensor:
    return SparseTensor(feats, coords)


def check_ops(layers, torch_layers, what: str) -> None:
    coords, feats = scene()
    check(layers, torch_layers, coords, feats, what, spconv_input, torch_input)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_submanifold_conv(kernel_size):
    check_ops(*map(list, zip(twin(sb.conv, tb.conv, 3, 8, kernel_size))), f"conv k{kernel_size}")


def test_one_by_one_conv_with_bias():
    check_ops(*map(list, zip(twin(sb.conv, tb.conv, 3, 5, 1, bias=True))), "conv 1x1")


def test_strided_conv_and_transpose():
    d1, d1_t = twin(sb.conv, tb.conv, 3, 6, 2, stride=2)
    d2, d2_t = twin(sb.conv, tb.conv, 6, 6, 2, stride=2)
    u2, u2_t = twin(sb.conv_tr, tb.conv_tr, 6, 4)
    u1, u1_t = twin(sb.conv_tr, tb.conv_tr, 4, 2)
    check_ops([d1], [d1_t], "strided conv")
    check_ops([d1, d2, u2, u1], [d1_t, d2_t, u2_t, u1_t], "strided + transposed convs")


def test_batch_norm_relu_cat():
    c, c_t = twin(sb.conv, tb.conv, 3, 4, 3)
    n, n_t = twin(sb.batch_norm, tb.batch_norm, 4, 0.02)

    class Block(torch.nn.Module):
        def __init__(self, ops, conv, norm):
            super().__init__()
            self.ops, self.conv, self.norm, self.relu = ops, conv, norm, ops.relu()

        def forward(self, x):
            y = self.conv(x)
            return self.ops.cat(self.relu(self.norm(y)), y)

    check_ops([Block(sb, c, n)], [Block(tb, c_t, n_t)], "conv-bn-relu-cat")
    assert_rel_close(n.bn.running_var, n_t.bn.running_var, "bn running variance")


@pytest.mark.parametrize("train", [True, False])
def test_res16unet34c(train):
    """float64: forward and every gradient agree."""
    coords, feats = scene(1500)
    assert_networks_agree(*twin_networks("spconv", "torch", train), coords, feats, torch.float64,
                          gradients=True)


def test_checkpoint_from_torch_loads_into_spconv(tmp_path):
    coords, feats = scene(1000, seed=4)
    ref = build_network("Res16UNet34C", 3, 20, backend="torch")
    with torch.no_grad():  # non-trivial BatchNorm statistics
        ref(SparseTensor(feats, coords))
    ref.eval()
    path = tmp_path / "torch-backend.pth"
    torch.save({"state_dict": ref.state_dict()}, path)
    net = load_checkpoint(build_network("Res16UNet34C", 3, 20, backend="spconv"), path).eval()
    with torch.no_grad():
        assert_rel_close(net(SparseTensor(feats, coords)).features,
                         ref(SparseTensor(feats, coords)).features, "loaded checkpoint forward")


def test_sums_are_right_on_several_threads_and_the_thread_count_is_restored():
    coords, feats = scene()
    a, b = twin(sb.conv, tb.conv, 3, 32, 3)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with torch.no_grad():
            runs = [a(spconv_input(coords, feats)).features for _ in range(3)]
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)
    with torch.no_grad():
        ref = b(torch_input(coords, feats)).features
    for y in runs:
        assert_rel_close(y, ref, "conv k3 on 4 threads")
