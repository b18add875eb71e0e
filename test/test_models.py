"""The Res16UNet family on the torch backend: structure, reference names, checkpoints, training."""
from __future__ import annotations

import pytest
import torch

from ssen_ros.models import (ARCHITECTURES, CheckpointError, EmbeddingNet, SemanticNet, build_network,
                             load_checkpoint)
from ssen_ros.sparse import SparseTensor


def room_patch(n_side: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A floor, a wall and a box surface on the voxel grid, one batch, with random colours."""
    r = torch.arange(n_side)
    a, b = torch.meshgrid(r, r, indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    zero = torch.zeros_like(a)
    floor = torch.stack([a, b, zero], 1)
    wall = torch.stack([a, zero, b], 1)
    box = torch.stack([a // 3 + 6, b // 3 + 6, zero + 6], 1)
    xyz = torch.unique(torch.cat([floor, wall, box]), dim=0)
    coords = torch.cat([torch.zeros(len(xyz), 1, dtype=torch.long), xyz], 1).int()
    feats = torch.rand(len(coords), 3, generator=torch.Generator().manual_seed(seed)) - 0.5
    return coords, feats


def _res16unet_parameters(in_channels: int, out_channels: int, conv1_kernel: int, planes: tuple,
                          layers: tuple, init_dim: int = 32) -> int:
    """Parameters of MinkowskiEngine's Res16UNetBase with BasicBlocks, counted from its layer
    table (chrischoy/SpatioTemporalSegmentation, models/res16unet.py): convolutions without bias
    (k^3 * in * out), BatchNorm weight and bias, a 1x1 projection where a block changes width,
    transposed stride-2 convolutions joined to the encoder's skip, a 1x1 head with bias."""
    def blocks(width: int, planes_: int, count: int) -> "tuple[int, int]":
        total = 0
        for _ in range(count):
            total += 27 * width * planes_ + 27 * planes_ * planes_ + 4 * planes_
            if width != planes_:
                total += width * planes_ + 2 * planes_
            width = planes_
        return total, width

    total, width, skips = conv1_kernel ** 3 * in_channels * init_dim + 2 * init_dim, init_dim, []
    for i in range(4):  # stride-2 convolution, then the stage
        skips.append(width)
        total += 8 * width * width + 2 * width
        added, width = blocks(width, planes[i], layers[i])
        total += added
    for i in range(4, 8):  # transposed convolution, concatenated with the skip, then the stage
        total += 8 * width * planes[i] + 2 * planes[i]
        added, width = blocks(planes[i] + skips.pop(), planes[i], layers[i])
        total += added
    return total + width * out_channels + out_channels


def test_res16unet34c_is_the_reference_network():
    table = dict(planes=(32, 64, 128, 256, 256, 128, 96, 96), layers=(2, 3, 4, 6, 2, 2, 2, 2))
    net = build_network("Res16UNet34C", 3, 20, conv1_kernel=5, backend="torch")
    assert sum(p.numel() for p in net.parameters()) == _res16unet_parameters(3, 20, 5, **table) == 37_856_052
    k3 = build_network("Res16UNet34C", 3, 20, backend="torch")
    assert sum(p.numel() for p in k3.parameters()) == _res16unet_parameters(3, 20, 3, **table)
    assert [len(getattr(net, f"block{i}")) for i in range(1, 9)] == [2, 3, 4, 6, 2, 2, 2, 2]
    assert [getattr(net, f"block{i}")[0].conv2.kernel.shape[-1] for i in range(1, 9)] == \
        [32, 64, 128, 256, 256, 128, 96, 96]
    assert net.bn0.bn.momentum == 0.02 and net.bntr7.bn.momentum == 0.02
    assert net.block5[0].downsample[1].bn.momentum == 0.02
    keys = net.state_dict().keys()
    for key in ("conv0p1s1.kernel", "bn0.bn.weight", "bn0.bn.running_var", "conv1p1s2.kernel",
                "block1.0.conv1.kernel", "block1.0.norm1.bn.weight", "block1.1.conv2.kernel",
                "conv4p8s2.kernel", "block4.5.norm2.bn.bias", "convtr4p16s2.kernel", "bntr4.bn.weight",
                "block5.0.downsample.0.kernel", "block5.0.downsample.1.bn.running_mean",
                "convtr7p2s2.kernel", "block8.1.conv1.kernel", "final.kernel", "final.bias"):
        assert key in keys, key
    sd = net.state_dict()
    assert sd["conv0p1s1.kernel"].shape == (125, 3, 32)
    assert sd["conv1p1s2.kernel"].shape == (8, 32, 32)
    assert sd["convtr4p16s2.kernel"].shape == (8, 256, 256)
    assert sd["block5.0.conv1.kernel"].shape == (27, 384, 256)
    assert sd["block5.0.downsample.0.kernel"].shape == (384, 256)
    assert sd["final.kernel"].shape == (96, 20) and sd["final.bias"].shape == (1, 20)


def test_heads_and_small_variant():
    assert SemanticNet("Res16UNet14S", backend="torch").final.kernel.shape[-1] == 20
    assert EmbeddingNet("Res16UNet14S", backend="torch").final.kernel.shape[-1] == 8
    small = build_network("Res16UNet14S", 3, 20, backend="torch")
    assert sum(p.numel() for p in small.parameters()) < 1_000_000
    with pytest.raises(ValueError, match="unknown architecture 'Res16UNet99'"):
        build_network("Res16UNet99", 3, 20, backend="torch")
    with pytest.raises(ValueError, match="conv1_kernel must be 3 or 5"):
        build_network("Res16UNet14S", 3, 20, conv1_kernel=7, backend="torch")
    assert {"Res16UNet34C", "Res16UNet14A", "Res16UNet18A"} <= set(ARCHITECTURES)


def test_forward_keeps_the_input_row_order():
    coords, feats = room_patch()
    net = build_network("Res16UNet14S", 3, 8, backend="torch").eval()
    perm = torch.randperm(len(coords), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net(SparseTensor(feats, coords))
        y_perm = net(SparseTensor(feats[perm], coords[perm]))
    assert y.features.shape == (len(coords), 8) and y.stride == 1
    torch.testing.assert_close(y_perm.features, y.features[perm], rtol=1e-4, atol=1e-5)


def test_checkpoint_round_trip_and_prefixes(tmp_path):
    coords, feats = room_patch()
    src = build_network("Res16UNet14S", 3, 20, backend="torch").eval()
    path = tmp_path / "MinkUNet-like.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, path)
    dst = load_checkpoint(build_network("Res16UNet14S", 3, 20, backend="torch").eval(), path)
    with torch.no_grad():
        torch.testing.assert_close(dst(SparseTensor(feats, coords)).features,
                                   src(SparseTensor(feats, coords)).features)
    me04 = {k: v.unsqueeze(0) if k.endswith("final.kernel") or "downsample.0" in k else v
            for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert me04["final.kernel"].shape == (1, 32, 20)  # MinkowskiEngine 0.4 layout, no counters
    old = load_checkpoint(build_network("Res16UNet14S", 3, 20, backend="torch").eval(), me04)
    with torch.no_grad():
        torch.testing.assert_close(old(SparseTensor(feats, coords)).features,
                                   src(SparseTensor(feats, coords)).features)


def test_checkpoint_errors_list_every_problem(tmp_path):
    state = build_network("Res16UNet14S", 3, 20, backend="torch").state_dict()
    state.pop("bn0.bn.weight")
    state["extra.kernel"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_network("Res16UNet14S", 3, 8, backend="torch"), path)
    text = str(err.value)
    assert "bad.pth" in text and "missing (1): bn0.bn.weight" in text
    assert "unexpected (1): extra.kernel" in text
    assert "final.kernel: checkpoint (32, 20) vs model (32, 8)" in text


def test_drop_final_keeps_the_new_head():
    semantic = build_network("Res16UNet14S", 3, 20, backend="torch")
    embedding = build_network("Res16UNet14S", 3, 8, backend="torch")
    head = embedding.final.kernel.detach().clone()
    load_checkpoint(embedding, {"state_dict": semantic.state_dict()}, drop_final=True)
    torch.testing.assert_close(embedding.final.kernel.detach(), head)
    torch.testing.assert_close(embedding.block1[0].conv1.kernel.detach(), semantic.block1[0].conv1.kernel.detach())


def test_small_network_trains():
    coords, feats = room_patch()
    labels = (coords[:, 3] > 0).long() + (coords[:, 1] > 12).long()  # floor / wall / far part
    torch.manual_seed(0)
    net = build_network("Res16UNet14S", 3, 3, backend="torch").train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(SparseTensor(feats, coords)).features, labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
