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

from parity import Backends, BackendParity, assert_rel_close, scene, sparse_input
from ssen_ros.sparse import SparseTensor, backend_available
from ssen_ros.sparse import torch_backend as tb

_OK, _WHY = backend_available("spconv")
pytestmark = pytest.mark.skipif(not _OK, reason=f"spconv does not import: {_WHY}")

if _OK:
    from ssen_ros.sparse import spconv_backend as sb


def spconv_input(coords: torch.Tensor, feats: torch.Tensor) -> "sb.SpconvTensor":
    return sb.to_native(SparseTensor(feats, coords))


@pytest.fixture
def backends() -> Backends:
    return Backends(sb, tb, spconv_input, sparse_input)


class TestParity(BackendParity):
    """The spconv backend against the torch backend."""

    backend, ref_backend = "spconv", "torch"


def test_sums_are_right_on_several_threads_and_the_thread_count_is_restored(backends):
    coords, feats = scene()
    a, b = backends.twin("conv", 3, 32, 3)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with torch.no_grad():
            runs = [a(spconv_input(coords, feats)).features for _ in range(3)]
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)
    with torch.no_grad():
        ref = b(sparse_input(coords, feats)).features
    for y in runs:
        assert_rel_close(y, ref, "conv k3 on 4 threads")
