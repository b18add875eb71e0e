"""RViz markers (ssen_ros.ros.markers): DELETEALL first, boxes and labels per instance."""
import math

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")

import transforms3d  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from ssen_ros.instances import Instance  # noqa: E402
from ssen_ros.ros.convert import LabeledCloudEncoder, instance_color  # noqa: E402
from ssen_ros.io.pointcloud2 import cloud_from_pointcloud2  # noqa: E402
from ssen_ros.ros.markers import MIN_EXTENT, TEXT_GAP, instance_markers  # noqa: E402

pytestmark = pytest.mark.ros


def chair(inst_id=7, yaw=0.4, obb_size=(0.6, 0.5, 0.9), score=0.876):
    return Instance(id=inst_id, class_id=4, class_name="chair", score=score, point_count=100,
                    centroid=(1.0, 2.0, 0.4), aabb_center=(1.1, 2.1, 0.45), aabb_size=(0.7, 0.65, 0.9),
                    obb_center=(1.05, 2.05, 0.45), obb_yaw=yaw, obb_size=obb_size)


def header():
    h = Header(frame_id="map")
    h.stamp.sec, h.stamp.nanosec = 42, 7
    return h


def test_deleteall_first_then_a_box_and_a_label_per_instance_in_the_input_header():
    instances = [chair(7), chair(3, yaw=-0.2, score=0.5)]
    msg = instance_markers(instances, header())
    first, rest = msg.markers[0], msg.markers[1:]
    assert first.action == Marker.DELETEALL and len(rest) == 4
    for m in msg.markers:
        assert m.header.frame_id == "map" and (m.header.stamp.sec, m.header.stamp.nanosec) == (42, 7)
    boxes = {m.id: m for m in rest if m.ns == "boxes"}
    labels = {m.id: m for m in rest if m.ns == "labels"}
    assert set(boxes) == set(labels) == {7, 3}
    assert all(m.type == Marker.CUBE and m.action == Marker.ADD for m in boxes.values())
    assert all(m.type == Marker.TEXT_VIEW_FACING for m in labels.values())
    assert labels[7].text == "chair 0.88" and labels[3].text == "chair 0.50"
    # it survives serialisation (all field types right)
    back = deserialize_message(serialize_message(msg), MarkerArray)
    assert [m.id for m in back.markers] == [m.id for m in msg.markers]


def test_oriented_box_pose_scale_and_label_position():
    inst = chair(yaw=0.4)
    box, text = instance_markers([inst], header()).markers[1:]
    p, q = box.pose.position, box.pose.orientation
    assert (p.x, p.y, p.z) == inst.obb_center
    assert (box.scale.x, box.scale.y, box.scale.z) == inst.obb_size
    # quaternion (w, x, y, z) -> Euler: a pure rotation of 0.4 rad about z
    roll, pitch, yaw = transforms3d.euler.quat2euler([q.w, q.x, q.y, q.z], "sxyz")
    assert roll == pytest.approx(0, abs=1e-12) and pitch == pytest.approx(0, abs=1e-12)
    assert yaw == pytest.approx(0.4)
    assert math.isclose(q.w**2 + q.z**2, 1.0)
    assert text.pose.position.z == pytest.approx(0.45 + 0.9 / 2 + TEXT_GAP)
    assert (text.pose.position.x, text.pose.position.y) == inst.obb_center[:2]
    assert text.scale.z > 0


def test_axis_aligned_boxes_when_not_oriented_and_flat_instances_get_a_minimum_extent():
    inst = chair(yaw=0.4, obb_size=(0.6, 0.0, 0.9))
    box = instance_markers([inst], header(), oriented=False).markers[1]
    assert (box.pose.position.x, box.pose.position.y, box.pose.position.z) == inst.aabb_center
    assert (box.scale.x, box.scale.y, box.scale.z) == inst.aabb_size
    assert (box.pose.orientation.z, box.pose.orientation.w) == (0.0, 1.0)
    flat = instance_markers([inst], header()).markers[1]
    assert flat.scale.y == MIN_EXTENT


def test_markers_have_the_labelled_clouds_instance_colours():
    instances = [chair(7), chair(12)]
    points = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], dtype=np.float32)
    raw = LabeledCloudEncoder()(points, np.array([4, 4, 1]), np.array([7, 12, -1]), instances, header())
    cloud = cloud_from_pointcloud2(deserialize_message(raw, PointCloud2))
    markers = instance_markers(instances, header()).markers[1:]
    for m in markers:
        rgb = [round(c * 255) for c in (m.color.r, m.color.g, m.color.b)]
        assert rgb == list(instance_color(m.id))
        row = {7: 0, 12: 1}[m.id]
        assert rgb == cloud.colors[row].tolist()
        assert m.color.a == (1.0 if m.ns == "labels" else pytest.approx(0.4))
    assert instance_color(7) != instance_color(8)


def test_no_instances_still_clears_the_display():
    msg = instance_markers([], header())
    assert [m.action for m in msg.markers] == [Marker.DELETEALL]
