"""The config tree: YAML in, unknown keys and wrong types rejected with the key named."""
import pytest

from ssen_ros.config import (ConfigError, SegmenterConfig, TrainConfig, field_docs, flatten,
                             from_dict, load_yaml, to_dict, unflatten)


def test_yaml_round_trip(tmp_path):
    import yaml
    cfg = from_dict(TrainConfig, {"steps": 5, "loss": {"p": 0}, "augment": {"rotate_z": False}})
    assert cfg.loss.p == 0.0 and isinstance(cfg.loss.p, float) and cfg.augment.rotate_z is False
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_yaml(TrainConfig, path) == cfg


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("loss:\n  gama: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown key\(s\) \['gama'\] in loss"):
        load_yaml(TrainConfig, path)


@pytest.mark.parametrize("data, message", [
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"steps": -1}, "steps must be >= 1, got -1"),
    ({"lr": float("nan")}, "lr must be >= 1e-09, got nan"),
    ({"lr": float("inf")}, "lr must be <= 10.0, got inf"),
    ({"checkpoint_every": 0}, "checkpoint_every must be >= 1"),
    ({"in_channels": 0}, "in_channels must be >= 3"),
    ({"scenes": -1}, "scenes must be >= 0"),
    ({"augment": {"min_density": 0}}, "augment.min_density must be >= 0.001"),
    ({"augment": {"color_drop": 1.5}}, "augment.color_drop must be <= 1.0"),
    ({"augment": {"scale_min": 1.2, "scale_max": 0.8}}, "augment.scale_min 1.2 must not exceed scale_max 0.8"),
    ({"head_refit": {"alpha": float("nan")}}, "head_refit.alpha must be >= 0.0, got nan"),
    ({"head_refit": {"voxels_per_class": 0}}, "head_refit.voxels_per_class must be >= 1"),
    ({"loss": {"gamma": float("nan")}}, "loss.gamma must be >= 0.0, got nan"),
])
def test_training_settings_out_of_range_are_named(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        from_dict(TrainConfig, data)


def test_an_empty_config_file_is_refused_not_read_as_every_default(tmp_path):
    for text in ("", "~\n"):
        (tmp_path / "empty.yaml").write_text(text)
        with pytest.raises(ConfigError, match="empty.yaml: the config is empty"):
            load_yaml(TrainConfig, tmp_path / "empty.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\x98\xff\x00")
    with pytest.raises(ConfigError, match="binary.yaml: cannot read config"):
        load_yaml(TrainConfig, tmp_path / "binary.yaml")


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="cluster.min_cluster_size: expected int"):
        from_dict(SegmenterConfig, {"cluster": {"min_cluster_size": "big"}})
    with pytest.raises(ConfigError, match=r"crop_min\[1\]: expected float"):
        from_dict(SegmenterConfig, {"crop_min": [0, "a", 0]})


def test_flatten_names_every_leaf_with_a_description():
    flat = flatten(SegmenterConfig())
    assert flat["cluster.min_cluster_size"] == 200
    assert from_dict(SegmenterConfig, unflatten(flat)) == SegmenterConfig()
    docs = field_docs(SegmenterConfig)
    assert set(flat) <= set(docs), set(flat) - set(docs)


@pytest.mark.parametrize("kwargs, reason", [
    ({"crop_min": [0.0, 0.0]}, r"crop_min must be empty or \[x, y, z\], got \[0.0, 0.0\]"),
    ({"crop_max": [1.0, 1.0, 1.0, 1.0]}, r"crop_max must be empty or \[x, y, z\]"),
    ({"crop_min": [0.0, 0.0, 5.0], "crop_max": [1.0, 1.0, 1.0]}, r"crop_min \[0.0, 0.0, 5.0\] must be below crop_max"),
    ({"crop_min": [float("nan"), 0.0, 0.0]}, r"crop_min must be finite"),
    ({"tile_size": 0.05}, r"tile_size must be 0 \(no tiles\) or at least 1.0 m"),
    ({"background_classes": ["wall", "sofaa"]}, r"background_classes: unknown class name\(s\) \['sofaa'\]"),
])
def test_segmenter_config_checks_its_fields_together(kwargs, reason):
    with pytest.raises(ConfigError, match=reason):
        SegmenterConfig(**kwargs)
    with pytest.raises(ConfigError, match=reason):  # the same from YAML / ROS parameters
        from_dict(SegmenterConfig, kwargs)
    SegmenterConfig(crop_min=[0.0, 0.0, 0.0], crop_max=[1.0, 1.0, 1.0], background_classes=["wall"])


@pytest.mark.parametrize("kwargs, reason", [
    ({"method": "kmeans"}, r"cluster.method must be one of \['fast', 'exact'\], got 'kmeans'"),
    ({"min_cluster_size": 1}, r"cluster.min_cluster_size must be >= 2, got 1"),
    ({"min_samples": -1}, r"cluster.min_samples must be >= 0"),
    ({"sample_size": 0}, r"cluster.sample_size must be >= 1"),
    ({"neighbours": -1}, r"cluster.neighbours must be >= 0"),
    ({"assign_radius": -0.1}, r"cluster.assign_radius must be >= 0"),
    ({"split_distance": -1.0}, r"cluster.split_distance must be >= 0"),
])
def test_cluster_config_checks_its_settings(kwargs, reason):
    from ssen_ros.config import ClusterConfig
    with pytest.raises(ConfigError, match=reason.removeprefix("cluster.")):  # from_dict adds the section
        ClusterConfig(**kwargs)
    with pytest.raises(ConfigError, match=reason):
        from_dict(SegmenterConfig, {"cluster": kwargs})


def test_validating_a_config_builds_no_clusterer(monkeypatch):
    import ssen_ros.cluster
    from ssen_ros.config import ClusterConfig

    def refuse(*args, **kwargs):
        raise AssertionError("a config check built a clusterer")

    monkeypatch.setattr(ssen_ros.cluster.EmbeddingClusterer, "__init__", refuse)
    with pytest.raises(ConfigError, match="method"):
        ClusterConfig(method="kmeans")
    SegmenterConfig(cluster=ClusterConfig(method="exact", min_cluster_size=2))
