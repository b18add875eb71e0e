"""The node's parameters: the shipped params file against the config's schema and descriptors (in
this process), and, with a real node process over DDS, the file loaded, descriptions served, bad
run-time changes refused with the reason and a good one applied to the last map again."""
from __future__ import annotations

import time

import pytest
import yaml

pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")

from rcl_interfaces.msg import ParameterValue  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, GetParameters  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from node_harness import (OUTPUT_TIMEOUT_S, PARAMS_FILE, good_map, set_parameters,  # noqa: E402
                          synthetic_room)
from ssen_ros.classes import class_ids  # noqa: E402
from ssen_ros.config import ConfigError, NodeConfig, choices, flatten, leaves  # noqa: E402
from ssen_ros.ros.parameters import descriptor, parameter_types  # noqa: E402


def yaml_leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(yaml_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_params_file_lists_every_parameter_with_its_default():
    params = yaml.safe_load(PARAMS_FILE.read_text())["ssen_node"]["ros__parameters"]
    leaves = yaml_leaves(params)
    defaults = flatten(NodeConfig())
    assert leaves == defaults
    for name, value in leaves.items():  # typed as declared: 0.0 not 0 for a double
        assert type(value) is type(defaults[name]), name


def test_every_parameter_is_described_typed_and_ranged_around_its_default():
    from ssen_ros.config import field_docs
    docs, defaults = field_docs(NodeConfig), flatten(NodeConfig())
    assert set(parameter_types()) == set(defaults)
    schema = leaves(NodeConfig)
    for name, value in defaults.items():
        d = descriptor(name, docs[name])
        assert len(d.description) > 20, name
        tp, f = schema[name]
        assert d.read_only == f.metadata.get("read_only", False)
        for ranges in (d.integer_range, d.floating_point_range):
            for r in ranges:
                assert r.from_value <= value <= r.to_value, name
        if choices(tp):
            assert value in choices(tp) and "one of" in d.additional_constraints
    # every number has a range, from the config's schema
    assert all(d.integer_range or d.floating_point_range for d in
               (descriptor(n, docs[n]) for n, v in defaults.items() if type(v) in (int, float)))


@pytest.mark.parametrize("change, reason", [
    ({"background_classes": ["chair", "sofaa"]}, r"background_classes.*sofaa"),
    ({"crop_min": [0.0, 0.0]}, r"crop_min must be empty or \[x, y, z\]"),
    ({"crop_min": [0.0, 0.0, 5.0], "crop_max": [1.0, 1.0, 1.0]}, r"crop_min .* below crop_max"),
    ({"cluster": {"method": "kmeans"}}, r"cluster.method must be one of"),
    ({"device": "tpu"}, r"segmenter.device must be one of"),
    ({"crop_min": [float("nan"), 0.0, 0.0]}, r"crop_min must be finite"),
    ({"crop_max": [1.0, float("inf"), 1.0]}, r"crop_max must be finite"),
    ({"tile_size": 0.05}, r"tile_size must be 0 \(no tiles\) or at least 1.0 m"),
])
def test_the_config_names_the_bad_setting(change, reason):
    from ssen_ros.config import from_dict, to_dict
    tree = to_dict(NodeConfig())
    for key, value in change.items():
        if isinstance(value, dict):
            tree["segmenter"][key].update(value)
        else:
            tree["segmenter"][key] = value
    with pytest.raises(ConfigError, match=reason):  # the config checks itself
        from_dict(NodeConfig, tree)
    assert class_ids(from_dict(NodeConfig, to_dict(NodeConfig())).segmenter.background_classes) == [0, 1]  # wall, floor


def _plain(value: ParameterValue):
    field = {1: "bool_value", 2: "integer_value", 3: "double_value", 4: "string_value",
             8: "double_array_value", 9: "string_array_value"}[value.type]
    v = getattr(value, field)
    return list(v) if field.endswith("array_value") else v


@pytest.mark.ros
def test_params_file_loads_and_run_time_changes_are_validated(node, ros_side, weights):
    names = sorted(flatten(NodeConfig()))
    got = ros_side.call(GetParameters, "get_parameters", GetParameters.Request(names=names))
    values = dict(zip(names, (_plain(v) for v in got.values)))
    expected = yaml_leaves(yaml.safe_load(PARAMS_FILE.read_text())["ssen_node"]["ros__parameters"])
    expected.update({"segmenter.weights": str(weights), "segmenter.backend": "torch",
                     "segmenter.device": "cpu", "segmenter.background_classes": [],
                     "segmenter.cluster.min_cluster_size": 50, "segmenter.max_points": 1_000_000})
    assert values == expected
    described = ros_side.call(DescribeParameters, "describe_parameters",
                              DescribeParameters.Request(names=names)).descriptors
    assert all(d.description for d in described)
    by_name = {d.name: d for d in described}
    assert by_name["segmenter.weights"].read_only
    assert by_name["segmenter.cluster.min_cluster_size"].integer_range[0].from_value == 2

    rejected = {
        "segmenter__background_classes": (["chair", "sofaa"], "sofaa"),
        "segmenter__cluster__min_cluster_size": (1, "out of range"),
        "segmenter__weights": ("other.pt", "read-only"),
        "depth": (5, "read-only"),
        "segmenter__crop_min": ([0.0, 1.0], "crop_min must be empty or [x, y, z]"),
        "min_period": (2, "Wrong parameter type"),
    }
    for name, (value, reason) in rejected.items():
        result = set_parameters(ros_side, **{name: value})
        assert not result.successful and reason in result.reason, (name, result.reason)
    # a valid change is applied and the last map is segmented again with it, timed from the change
    last_map, header = good_map(ros_side, synthetic_room(6000, seed=5))  # this test's own last map
    ros_side.publish(last_map)
    ros_side.outputs(header)
    before = {name: len(msgs) for name, msgs in ros_side.received.items()}
    time.sleep(2.0)  # the last map arrived well before
    t_set = time.monotonic()
    result = set_parameters(ros_side, oriented_boxes=False)
    assert result.successful, result.reason
    ros_side.spin_until(lambda: all(len(msgs) > before[name] for name, msgs in
                                    ros_side.received.items()), OUTPUT_TIMEOUT_S, "the re-run")
    assert ros_side.received["instances"][-1].processing_time <= time.monotonic() - t_set
    boxes = [m for m in ros_side.received["markers"][-1].markers if m.type == Marker.CUBE]
    assert boxes and all(b.pose.orientation.z == 0.0 and b.pose.orientation.w == 1.0 for b in boxes)
    node.wait_for(r"parameters changed: oriented_boxes=False")
