"""The pipeline end to end on untrained weights: shapes, crop, bad input, weights errors."""
import numpy as np
import pytest
import torch

from ssen_ros import checkpoint
from ssen_ros.classes import NUM_CLASSES
from ssen_ros.config import ClusterConfig, SegmenterConfig
from ssen_ros.instances import Instance
from ssen_ros.segmentation import label_points_by_instance
from ssen_ros.segmenter import Segmenter, SegmenterError, pick_device


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)  # the same untrained networks whatever ran before (rotation test needs labels to vary)
    spec = checkpoint.ModelSpec(arch="Res16UNet14S", voxel_size=0.1)
    path = tmp_path_factory.mktemp("w") / "w.pt"
    checkpoint.save(path, spec, *checkpoint.build_pair(spec, backend="torch"), half=True)
    return path


def room(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 3, (n, 3))
    pts[: n // 2, 2] = 0.0  # a floor
    return pts, rng.integers(0, 256, (n, 3)).astype(np.uint8)


def segmenter(weights, **kw):
    return Segmenter(SegmenterConfig(weights=str(weights), backend="torch", device="cpu",
                                     background_classes=[], cluster=ClusterConfig(min_cluster_size=250), **kw))


def test_labels_every_point_and_records_match(weights):
    pts, cols = room()
    result = segmenter(weights)(pts, cols)
    assert result.semantic.shape == result.instance.shape == (len(pts),)
    assert (result.semantic >= 0).all()
    for inst in result.instances:
        assert inst.point_count == int((result.instance == inst.id).sum())
    assert set(result.timings) >= {"voxelize", "semantic", "embedding", "cluster", "instances", "total"}
    assert result.timings["total"] >= sum(v for k, v in result.timings.items() if k != "total")


def test_crop_and_nonfinite_points_get_minus_one(weights):
    pts, cols = room()
    pts[0] = np.nan
    pts[1, 2] = np.inf
    pts[2] = [0.5, -0.5, 1.0]  # below crop_min in y only
    lo, hi = [0.0, 0.0, -1.0], [1.5, 3.0, 4.0]
    result = segmenter(weights, crop_min=lo, crop_max=hi)(pts, cols)
    outside = ~((pts >= lo).all(1) & (pts <= hi).all(1))
    assert outside[:3].all() and (pts[:, 0] > 1.5).any()
    assert (result.semantic[outside] == -1).all() and (result.instance[outside] == -1).all()
    assert (result.semantic[~outside] >= 0).all()


def test_points_beyond_the_coordinate_limit_are_dropped_and_counted(weights):
    pts, cols = room(3000)
    pts[:3] = [[8e19, 1.0, 1.0], [1.0, -3.4e38, 1.0], [1.0, 1.0, 10_001.0]]
    pts[3] = np.nan  # non-finite: dropped, but not counted as beyond the limit
    result = segmenter(weights, coordinate_limit=10_000.0)(pts, cols)
    assert result.num_beyond_limit == 3
    assert (result.semantic[:4] == -1).all() and (result.instance[:4] == -1).all()
    assert (result.semantic[4:] >= 0).all()
    assert segmenter(weights)(*room(3000)).num_beyond_limit == 0
    with pytest.raises(SegmenterError, match="over segmenter.max_tiles=4"):
        segmenter(weights, tile_size=1.0, tile_overlap=0.0, max_tiles=4)(pts, cols)


def test_rotation_averaging_runs(weights):
    pts, cols = room(2000)
    plain = segmenter(weights)(pts, cols)
    seg = segmenter(weights, tta_rotations=3)
    calls = []
    forward = seg.semantic_net.forward
    seg.semantic_net.forward = lambda x: calls.append(len(x.features)) or forward(x)
    averaged = seg(pts, cols)
    assert averaged.semantic.min() >= 0
    assert len(calls) == 3 and calls[0] == averaged.num_voxels  # the cloud, then 2 turned copies
    # the averaged class probabilities, which the instance scores carry, differ from one pass's
    assert averaged.instances and plain.instances
    assert [i.score for i in averaged.instances] != [i.score for i in plain.instances]


def test_bad_inputs_are_named(weights):
    seg = segmenter(weights, max_points=100)
    with pytest.raises(SegmenterError, match="exceed max_points=100"):
        seg(*room(200))
    with pytest.raises(SegmenterError, match=r"\(N, 3\)"):
        seg(np.zeros((5, 2)))
    empty = seg(np.zeros((0, 3)))
    assert empty.instances == [] and len(empty.semantic) == 0


def test_missing_or_foreign_weights_fail_with_the_path(tmp_path):
    with pytest.raises(checkpoint.WeightsError, match="nope.pt does not exist"):
        Segmenter(SegmenterConfig(weights=str(tmp_path / "nope.pt")))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.WeightsError, match="bad.pt cannot be read"):
        Segmenter(SegmenterConfig(weights=str(bad)))


def test_cuda_request_falls_back_to_cpu_without_cuda(monkeypatch, caplog):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING", logger="ssen_ros"):
        assert pick_device("cuda").type == "cpu"
    assert "CUDA is not available" in caplog.text
    assert pick_device("auto").type == "cpu"
    with pytest.raises(SegmenterError, match="device must be"):
        pick_device("tpu")


def test_cluster_sizes_scale_with_voxel_area():
    from ssen_ros.segmenter import scale_cluster_sizes
    scaled = scale_cluster_sizes(ClusterConfig(min_cluster_size=200, min_samples=0), 0.05)
    assert (scaled.min_cluster_size, scaled.min_samples) == (32, 32)  # 200 * (2/5)^2
    assert scale_cluster_sizes(ClusterConfig(min_cluster_size=200, min_samples=10), 0.02).min_samples == 10


def test_six_channel_weights_take_coordinates(tmp_path):
    """Paper §IV networks see RGB plus xyz (f = 6); 3-channel weights see RGB only."""
    from ssen_ros.features import with_coordinates
    feats = np.zeros((4, 3), np.float32)
    pts = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [2, 2, 4]], dtype=np.float64)
    six = with_coordinates(feats, pts, 6)
    assert six.shape == (4, 6) and np.allclose(six[:, 3:], pts - [1, 1, 1])
    assert with_coordinates(feats, pts, 3) is feats
    spec = checkpoint.ModelSpec(arch="Res16UNet14S", in_channels=6, voxel_size=0.1)
    path = tmp_path / "six.pt"
    checkpoint.save(path, spec, *checkpoint.build_pair(spec, backend="torch"))
    result = segmenter(path, tta_rotations=2)(*room(3000))
    assert result.semantic.min() >= 0


def test_reconfigure_applies_run_time_settings_and_refuses_the_networks(weights):
    from dataclasses import replace

    from ssen_ros.config import ConfigError
    seg = segmenter(weights)
    nets = seg.semantic_net
    changed = replace(seg.config, background_classes=["wall"], cluster=ClusterConfig(min_cluster_size=50))
    seg.reconfigure(changed)
    assert seg.config is changed and seg.background == [0] and seg.semantic_net is nets
    # 50 voxels of 2 cm hold a surface that 50 * (0.02 / 0.1) ** 2 = 2 voxels of the weights' 0.1 m hold
    assert seg.voxel_size == 0.1 and seg.clusterer.config.min_cluster_size == 2
    for key, value in (("weights", "other.pt"), ("device", "cuda"), ("backend", "minkowski"),
                       ("voxel_size", 0.1), ("threads", 3)):
        with pytest.raises(ConfigError, match=rf"{key} cannot change in a running Segmenter"):
            seg.reconfigure(replace(changed, **{key: value}))
    assert seg.config is changed


@pytest.mark.parametrize("tile_size", [0.0, 1.5])
def test_points_of_an_instance_carry_its_class_and_others_the_networks(weights, tile_size):
    pts, cols = room(12000, seed=3)
    seg = segmenter(weights, tile_size=tile_size, tile_overlap=0.5)

    def striped(centers, coords, features):  # class 5 or 6 by 10 cm stripes: every cluster mixes them
        probs = np.zeros((len(centers), NUM_CLASSES))
        probs[np.arange(len(centers)), 5 + (np.floor(centers[:, 0] * 10) % 2).astype(int)] = 1.0
        return probs

    seg._semantic_probs = striped
    result = seg(pts, cols)
    raw = seg.segment_tile(pts, cols)  # the same labels, not yet made to agree
    assert result.instances
    for inst in result.instances:
        assert (result.semantic[result.instance == inst.id] == inst.class_id).all()
    if tile_size == 0:
        outside = result.instance < 0
        assert (result.semantic[outside] == raw.semantic[outside]).all()
        assert (result.semantic[~outside] != raw.semantic[~outside]).any()  # stray votes overruled


def test_label_points_by_instance_overrules_stray_votes_only_inside_instances():
    semantic = np.array([1, 2, 1, 3, 3, 5, -1])
    instance = np.array([0, 0, 0, 4, -1, 4, -1])
    records = [Instance(0, 1, "", 0.9, 3, *[(0.0,) * 3] * 4, 0.0, (0.0,) * 3),
               Instance(4, 3, "", 0.8, 2, *[(0.0,) * 3] * 4, 0.0, (0.0,) * 3)]
    label_points_by_instance(semantic, instance, records)
    assert semantic.tolist() == [1, 1, 1, 3, 3, 3, -1]
    label_points_by_instance(semantic, np.full(7, -1), [])  # no instances: nothing changes
    assert semantic.tolist() == [1, 1, 1, 3, 3, 3, -1]
