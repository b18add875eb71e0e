"""The node's message conversion (ssen_ros.ros.convert), in this process without DDS: the
labelled cloud's layout, values and colours (its serialised bytes read back by rclpy), and the
InstanceArray's fields."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ssen_ros.classes import CLASS_COLORS  # noqa: E402
from ssen_ros.instances import Instance  # noqa: E402
from ssen_ros.io.pointcloud2 import FLOAT32, INT32, cloud_from_pointcloud2  # noqa: E402
from ssen_ros.msg import InstanceArray  # noqa: E402
from ssen_ros.ros.convert import LabeledCloudEncoder, instance_array, instance_color, qos_profile  # noqa: E402


def _record(inst_id, class_id=4, score=0.75):
    return Instance(inst_id, class_id, "chair", score, 2, (1.0, 2.0, 3.0), (1.5, 2.5, 3.5),
                    (0.5, 0.6, 0.7), (1.4, 2.4, 3.4), 0.3, (0.4, 0.5, 0.6))


def test_labeled_cloud_layout_values_and_colours():
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.float64)
    semantic = np.array([1, 4, 4, 0, -1])
    point_ids = np.array([-1, 7, 7, 12, -1])
    scores = np.array([0, 0.75, 0.75, 0.5, 0], dtype=np.float32)
    header = Header(frame_id="map")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    raw = LabeledCloudEncoder()(points, semantic, point_ids, [_record(12, score=0.5), _record(7)], header)
    assert isinstance(raw, bytes)  # what Publisher.publish sends as it is
    msg = deserialize_message(raw, PointCloud2)
    layout = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert layout == [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1),
                      ("rgb", 12, FLOAT32, 1), ("label", 16, INT32, 1), ("instance", 20, INT32, 1),
                      ("score", 24, FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 5, 28, 140)
    assert msg.header.frame_id == "map" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 34)
    assert not msg.is_bigendian and msg.is_dense
    back = cloud_from_pointcloud2(msg)
    np.testing.assert_array_equal(back.points, points)
    assert back.fields["label"].tolist() == [1, 4, 4, 4, -1]  # an instance's points carry its class
    assert back.fields["instance"].tolist() == point_ids.tolist()
    np.testing.assert_array_equal(back.fields["score"], scores)
    assert back.colors[0].tolist() == CLASS_COLORS[1].tolist()  # background: class colour
    assert back.colors[1].tolist() == back.colors[2].tolist() == list(instance_color(7))
    assert back.colors[3].tolist() == list(instance_color(12)) != list(instance_color(7))
    assert back.colors[4].tolist() == [128, 128, 128]  # unlabelled
    # the rgb field is RViz's packed r<<16|g<<8|b in a float32
    rgb = np.frombuffer(bytes(msg.data), dtype="<u4").reshape(5, 7)[:, 3]
    r, g, b = instance_color(7)
    assert rgb[1] & 0xFFFFFF == (r << 16) | (g << 8) | b


def test_labeled_cloud_with_ids_carries_the_mapped_ids():
    """The node passes the segmenter's ids and the tracker's mapping: the bytes are those of the
    cloud written from points and records already carrying the stable ids."""
    points = np.random.default_rng(2).uniform(0, 1, (6, 3))
    semantic = np.array([1, 4, 4, 0, -1, 6])
    segment_ids = np.array([-1, 0, 0, 1, -1, 2])
    ids = {0: 7, 1: 12, 2: 3}
    records = [_record(0), _record(1, score=0.5), _record(2, class_id=6)]
    header = Header(frame_id="map")
    ours = LabeledCloudEncoder()(points, semantic, segment_ids, records, header, ids)
    stable = [_record(7), _record(12, score=0.5), _record(3, class_id=6)]
    assert ours == LabeledCloudEncoder()(points, semantic, np.array([-1, 7, 7, 12, -1, 3]), stable, header)
    assert cloud_from_pointcloud2(deserialize_message(ours, PointCloud2)).fields["instance"].tolist() == [
        -1, 7, 7, 12, -1, 3]


def test_labeled_cloud_with_no_instances_marks_every_point_minus_one():
    points = np.random.default_rng(0).uniform(0, 1, (4, 3))
    msg = deserialize_message(LabeledCloudEncoder()(points, np.array([1, 1, -1, 3]), np.full(4, -1), [],
                                                    Header(frame_id="m")), PointCloud2)
    back = cloud_from_pointcloud2(msg)
    assert back.fields["instance"].tolist() == [-1] * 4 and (back.fields["score"] == 0).all()
    assert back.colors[0].tolist() == CLASS_COLORS[1].tolist() and back.colors[2].tolist() == [128] * 3


def test_an_empty_labelled_cloud_is_a_valid_message():
    msg = deserialize_message(LabeledCloudEncoder()(np.zeros((0, 3)), np.zeros(0, int), np.zeros(0, int), [],
                                                    Header(frame_id="odom")), PointCloud2)
    assert (msg.height, msg.width, msg.point_step, msg.row_step, len(msg.data)) == (1, 0, 28, 0, 0)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "label", "instance", "score"]


def test_an_encoder_that_wrote_a_larger_map_writes_the_next_one_as_a_fresh_encoder_does():
    """The encoder keeps its buffer between maps: nothing of a larger map stays in a smaller one's
    bytes, a map that grew a little reuses it, and a much larger one gets a larger buffer."""
    rng = np.random.default_rng(1)
    encoder = LabeledCloudEncoder()
    buffers = []
    for n, frame in ((50, "a_long_frame_name"), (20, "m"), (80, "map"), (83, "map")):
        points = rng.uniform(-5, 5, (n, 3)).astype(np.float32)
        ids = np.where(np.arange(n) % 3 == 0, 7, -1)
        args = (points, np.arange(n) % 5 - 1, ids, [_record(7, score=0.25)], Header(frame_id=frame))
        ours = encoder(*args)
        assert ours == LabeledCloudEncoder()(*args) and deserialize_message(ours, PointCloud2).width == n
        buffers.append(encoder._buffer)
    # the smaller map and the map grown by 3 points reuse the buffer; 80 points outgrew it
    assert buffers[1] is buffers[0] and buffers[2] is not buffers[1] and buffers[3] is buffers[2]


def test_instance_array_carries_every_field():
    header = Header(frame_id="odom")
    msg = instance_array([_record(3), _record(9, class_id=6, score=0.5)], header, 1.25)
    assert msg.header.frame_id == "odom" and msg.processing_time == 1.25
    first = msg.instances[0]
    assert (first.id, first.class_id, first.class_name, first.point_count) == (3, 4, "chair", 2)
    assert first.score == pytest.approx(0.75) and first.obb_yaw == pytest.approx(0.3)
    assert (first.centroid.x, first.aabb_center.y, first.aabb_size.z) == (1.0, 2.5, 0.7)
    assert (first.obb_center.x, first.obb_size.y) == (1.4, 0.5)
    assert msg.instances[1].class_id == 6
    assert deserialize_message(serialize_message(msg), InstanceArray) == msg
    with pytest.raises(ValueError, match="unknown policy"):
        qos_profile("reliable", "persistent")
