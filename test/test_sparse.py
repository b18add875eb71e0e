"""The sparse engine: kernel maps, the torch backend's ops against brute force, autograd, memory."""
from __future__ import annotations

import copy
import logging

import pytest
import torch

from ssen_ros.sparse import (CoordinateError, KernelMaps, SparseTensor, cat, get_backend, kernel_offsets,
                             resolve_backend, to_points)
from ssen_ros.sparse import torch_backend as tb


def random_coords(n: int = 400, span: int = 10, batches: int = 2, seed: int = 0) -> torch.Tensor:
    """Unique (batch, x, y, z) rows, negative coordinates included, in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    c = torch.cat([torch.randint(0, batches, (n, 1), generator=g),
                   torch.randint(-span, span, (n, 3), generator=g)], 1)
    c = torch.unique(c, dim=0)
    return c[torch.randperm(len(c), generator=g)].int()


def brute_submanifold(coords, feats, kernel, k):
    rows = {tuple(c): i for i, c in enumerate(coords.tolist())}
    out = torch.zeros(len(coords), kernel.shape[2], dtype=feats.dtype)
    for o, (b, x, y, z) in enumerate(coords.tolist()):
        for j, (dx, dy, dz) in enumerate(kernel_offsets(k).tolist()):
            i = rows.get((b, x + dx, y + dy, z + dz))
            if i is not None:
                out[o] += feats[i] @ kernel[j]
    return out


def parent_and_offset(c, stride):
    """Coarse coordinate at 2*stride and the ME offset index (x fastest) of a fine voxel."""
    b, *xyz = c
    par = [(v // (2 * stride)) * (2 * stride) for v in xyz]
    k = sum(((v - p) // stride) << axis for axis, (v, p) in enumerate(zip(xyz, par)))
    return (b, *par), k


def test_kernel_offsets_follow_minkowski_order():
    off3 = kernel_offsets(3)
    assert off3[0].tolist() == [-1, -1, -1] and off3[1].tolist() == [0, -1, -1]
    assert off3[3].tolist() == [-1, 0, -1] and off3[9].tolist() == [-1, -1, 0] and off3[13].tolist() == [0, 0, 0]
    assert kernel_offsets(2, 4).tolist()[:3] == [[0, 0, 0], [4, 0, 0], [0, 4, 0]]
    assert kernel_offsets(5).shape == (125, 3) and kernel_offsets(5)[62].tolist() == [0, 0, 0]


@pytest.mark.parametrize("k", [3, 5])
def test_submanifold_conv_matches_brute_force(k):
    c = random_coords()
    x = torch.randn(len(c), 5, dtype=torch.float64)
    layer = tb.Convolution(5, 4, k).double()
    y = layer(SparseTensor(x, c))
    assert y.stride == 1 and torch.equal(y.coords, c)
    torch.testing.assert_close(y.features, brute_submanifold(c, x, layer.kernel.detach(), k))


def test_strided_and_transposed_conv_match_brute_force():
    c = random_coords(seed=1)
    x = torch.randn(len(c), 3, dtype=torch.float64)
    down = tb.Convolution(3, 4, 2, stride=2).double()
    y = down(SparseTensor(x, c))
    assert y.stride == 2 and bool((y.coords[:, 1:] % 2 == 0).all())
    rows = {tuple(v): i for i, v in enumerate(y.coords.tolist())}
    ref = torch.zeros_like(y.features)
    parents = []
    for i, v in enumerate(c.tolist()):
        par, k = parent_and_offset(v, 1)
        parents.append((rows[par], k))
        ref[rows[par]] += x[i] @ down.kernel.detach()[k]
    assert len(rows) == len({p for p, _ in parents})
    torch.testing.assert_close(y.features, ref)

    up = tb.ConvolutionTranspose(4, 2, bias=True).double()
    z = up(y)
    assert z.stride == 1 and len(z) == len(c)
    ref_up = torch.stack([y.features[p] @ up.kernel.detach()[k] for p, k in parents]) + up.bias.detach()
    torch.testing.assert_close(z.features, ref_up)


def test_one_by_one_conv_and_bias_shapes_match_minkowski():
    layer = tb.Convolution(6, 3, 1, bias=True)
    assert layer.kernel.shape == (6, 3) and layer.bias.shape == (1, 3)
    assert tb.Convolution(6, 3, 3).kernel.shape == (27, 6, 3)
    assert tb.ConvolutionTranspose(6, 3).kernel.shape == (8, 6, 3)
    c = random_coords(50)
    x = torch.randn(len(c), 6)
    torch.testing.assert_close(layer(SparseTensor(x, c)).features, x @ layer.kernel + layer.bias)


def test_unsupported_kernels_are_rejected():
    with pytest.raises(ValueError, match="kernel 4 stride 1"):
        tb.Convolution(2, 2, 4)
    with pytest.raises(ValueError, match="kernel 3 stride 2"):
        tb.Convolution(2, 2, 3, stride=2)
    with pytest.raises(ValueError, match="stride >= 2"):
        tb.ConvolutionTranspose(2, 2)(SparseTensor(torch.zeros(3, 2), random_coords(3)))


@pytest.mark.parametrize("kind", ["submanifold3", "submanifold5", "down", "up"])
def test_kernel_conv_gradients(kind):
    c = random_coords(60 if kind == "submanifold5" else 120, span=4, seed=2)
    maps = KernelMaps(c)
    kmap = {"submanifold3": lambda: maps.submanifold(1, 3), "submanifold5": lambda: maps.submanifold(1, 5),
            "down": lambda: maps.downsample(1), "up": lambda: maps.downsample(1).transposed()}[kind]()
    cin, cout = (2, 1) if kind == "submanifold5" else (3, 2)  # keep the numerical Jacobian small
    x = torch.randn(kmap.num_in, cin, dtype=torch.float64, requires_grad=True)
    w = torch.randn(kmap.volume, cin, cout, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: tb.kernel_conv(a, b, kmap), (x, w))


def test_training_saves_only_input_and_weight():
    """The naive version kept every gathered matrix for backward (6.6 GB per step); ours does not."""
    c = random_coords(3000, span=12)
    x = torch.randn(len(c), 16, requires_grad=True)
    layer = tb.Convolution(16, 16, 3)
    saved: list[int] = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(SparseTensor(x, c)).features
    assert sorted(saved) == sorted([x.numel(), layer.kernel.numel()])
    y.square().sum().backward()
    assert x.grad is not None and layer.kernel.grad is not None


def test_kernel_maps_are_built_once_and_shared():
    c = random_coords()
    t = SparseTensor(torch.randn(len(c), 4), c)
    a, b = tb.Convolution(4, 4, 3), tb.Convolution(4, 8, 3)
    y = b(a(t))
    assert y.maps is t.maps
    assert t.maps.submanifold(1, 3) is t.maps.submanifold(1, 3)
    d = tb.Convolution(8, 8, 2, stride=2)(y)
    assert d.maps.downsample(1) is t.maps.downsample(1)
    assert torch.equal(d.coords, t.maps.coords(2))


def test_submanifold_map_is_symmetric_and_collision_free():
    c = random_coords(800, span=6)
    kmap = KernelMaps(c).submanifold(1, 3)
    assert kmap.pairs[13] is None
    for k, (i, o) in enumerate(p for p in kmap.pairs if p is not None):
        assert len(torch.unique(i)) == len(i) and len(torch.unique(o)) == len(o)
    ki, ko = kmap.pairs[0]
    mi, mo = kmap.pairs[26]
    assert sorted(zip(ki.tolist(), ko.tolist())) == sorted(zip(mo.tolist(), mi.tolist()))
    assert kmap.num_pairs == len(c) + sum(len(p[0]) for p in kmap.pairs if p is not None)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("sort_rows", [False, True])
def test_dense_grid_and_sorted_key_lookups_find_the_same_pairs(monkeypatch, kernel, sort_rows):
    from ssen_ros.sparse import kernel_map

    c = random_coords(1500, span=8, batches=3, seed=kernel)
    if sort_rows:
        c = torch.unique(c, dim=0)

    def pairs(stride):
        kmap = KernelMaps(c)
        kmap.coords(stride)
        return [None if p is None else sorted(zip(p[0].tolist(), p[1].tolist()))
                for p in kmap.submanifold(stride, kernel).pairs]

    for stride in (1, 2, 4):
        grid = pairs(stride)
        with monkeypatch.context() as m:
            m.setattr(kernel_map, "GRID_MAX_CELLS", 0)  # force binary search
            searched = pairs(stride)
        assert grid == searched
        assert sum(len(p) for p in grid if p) > 0


def test_row_order_does_not_change_results():
    c = random_coords(seed=3)
    x = torch.randn(len(c), 3, dtype=torch.float64)
    perm = torch.randperm(len(c))
    net = torch.nn.Sequential(tb.Convolution(3, 4, 3), tb.Convolution(4, 4, 2, stride=2),
                              tb.ConvolutionTranspose(4, 2)).double()
    y = net(SparseTensor(x, c)).features
    y_perm = net(SparseTensor(x[perm], c[perm])).features
    torch.testing.assert_close(y_perm, y[perm])


def test_tile_workers_give_the_same_results_and_gradients(monkeypatch):
    from ssen_ros.models import build_network
    from ssen_ros.sparse import use_cpu_threads

    monkeypatch.setattr(tb, "TILE_PAIRS", 512)  # many tiles, so every worker gets some
    c = random_coords(4000, span=16)
    x = torch.randn(len(c), 3)
    torch.manual_seed(0)
    pristine = build_network("Res16UNet14A", 3, 5, backend="torch")
    threads = torch.get_num_threads()
    results = []
    try:
        for workers in (1, 3):
            net = copy.deepcopy(pristine)  # training mode moves BatchNorm's running statistics
            use_cpu_threads(workers, "torch")
            assert torch.get_num_threads() == 1 and tb.tile_workers() == workers
            with torch.inference_mode():
                inferred = net.eval()(SparseTensor(x, c)).features.clone()
            xi = x.clone().requires_grad_()
            y = net.train()(SparseTensor(xi, c)).features
            y.square().mean().backward()
            results.append((inferred, y.detach(), xi.grad, net.block1[0].conv1.kernel.grad))
    finally:
        tb.set_tile_workers(1)
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same tiles, same sums: bit for bit
    with pytest.raises(ValueError, match="threads must be >= 0"):
        use_cpu_threads(-1, "torch")


def test_bad_coordinates_give_clear_errors():
    c = random_coords(20)
    with pytest.raises(CoordinateError, match="duplicate voxels"):
        SparseTensor(torch.zeros(21, 2), torch.cat([c, c[:1]]))
    with pytest.raises(CoordinateError, match=r"\(N, 4\)"):
        SparseTensor(torch.zeros(20, 2), c[:, :3])
    with pytest.raises(CoordinateError, match="integers"):
        SparseTensor(torch.zeros(20, 2), c.float())
    with pytest.raises(CoordinateError, match="5 feature rows for 20 voxels"):
        SparseTensor(torch.zeros(5, 2), c)
    with pytest.raises(CoordinateError, match="empty"):
        SparseTensor(torch.zeros(0, 2), c[:0])
    with pytest.raises(CoordinateError, match="batch indices"):
        SparseTensor(torch.zeros(1, 2), torch.tensor([[-1, 0, 0, 0]]))


def test_eval_batch_norm_in_place_matches_torch():
    c = random_coords(200)
    x = torch.randn(len(c), 4)
    norm = tb.BatchNorm(4, momentum=0.5)
    norm(SparseTensor(x * 3 + 1, c))  # training pass: non-trivial running statistics
    norm.bn.weight.data.uniform_(0.5, 2.0)
    norm.eval()
    expected = norm.bn(x)
    with torch.no_grad():
        y = norm(SparseTensor(x.clone(), c)).features
    torch.testing.assert_close(y, expected.detach())
    assert norm(SparseTensor(x, c)).features.requires_grad  # with autograd: the plain module


def test_cat_and_to_points():
    c = random_coords(30)
    t = SparseTensor(torch.randn(len(c), 2), c)
    u = t.replace(torch.randn(len(c), 3))
    assert cat(t, u).features.shape == (len(c), 5)
    with pytest.raises(CoordinateError, match="same voxels"):
        cat(t, SparseTensor(torch.randn(len(c), 3), c))
    idx = torch.tensor([3, 3, 0, len(c) - 1])
    torch.testing.assert_close(to_points(t, idx), t.features[idx])
    with pytest.raises(IndexError, match="outside"):
        to_points(t, torch.tensor([len(c)]))


def test_backend_choice_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="ssen_ros.sparse"):
        name = resolve_backend("auto")
    assert name in ("torch", "minkowski")
    assert f"sparse backend: {name}" in caplog.text
    assert resolve_backend("torch") == "torch" and get_backend("torch") is tb
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tpu")


def test_a_backend_whose_engine_is_not_installed_is_refused_by_name(monkeypatch):
    import importlib
    real = importlib.import_module

    def without_spconv(name, *args):
        if name == "ssen_ros.sparse.spconv_backend":
            raise ModuleNotFoundError("No module named 'spconv'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_spconv)
    with pytest.raises(ValueError, match="backend 'spconv' cannot run here: No module named 'spconv'"):
        resolve_backend("spconv")
    assert resolve_backend("torch") == "torch"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU visible to torch here)")
def test_cuda_matches_cpu():
    from ssen_ros.models import build_network

    c = random_coords(3000, span=20)
    x = torch.randn(len(c), 3)
    torch.manual_seed(0)
    net = build_network("Res16UNet14A", 3, 5, backend="torch")
    net_gpu = build_network("Res16UNet14A", 3, 5, backend="torch")
    net_gpu.load_state_dict(net.state_dict())
    net_gpu.cuda()
    outs = []
    for model, device in ((net, "cpu"), (net_gpu, "cuda")):
        xi = x.to(device).requires_grad_()
        y = model(SparseTensor(xi, c.to(device))).features
        y.square().mean().backward()
        outs.append((y.detach().cpu(), xi.grad.cpu(), model.block1[0].conv1.kernel.grad.cpu()))
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


def test_inference_mode_then_training_in_one_process():
    """Scratch memory made under torch.inference_mode must not leak into a training forward."""
    from ssen_ros.models import build_network
    from ssen_ros.sparse import SparseTensor
    net = build_network("Res16UNet14S", in_channels=3, out_channels=4, backend="torch")
    coords = torch.cat([torch.zeros(500, 1, dtype=torch.int32),
                        torch.randint(0, 64, (500, 3), dtype=torch.int32)], 1).unique(dim=0)
    feats = torch.randn(len(coords), 3)
    with torch.inference_mode():
        net.eval()(SparseTensor(feats, coords))
    net.train()(SparseTensor(feats, coords)).features.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
