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
