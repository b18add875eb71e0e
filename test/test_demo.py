"""``ssen demo``'s ROS side turns the node's messages back into library types."""
from __future__ import annotations

import pytest

from ssen_ros.instances import Instance

pytestmark = pytest.mark.ros


def test_instances_from_message_inverts_instance_array():
    from std_msgs.msg import Header

    from ssen_ros.ros.convert import instance_array
    from ssen_ros.ros.demo import instances_from_message

    # Values exact in float32 (the message's points and vectors are float64, scores float32).
    instances = [Instance(id=7, class_id=4, class_name="bed", score=0.75, point_count=1200,
                          centroid=(1.5, -2.25, 0.5), aabb_center=(1.25, -2.0, 0.625),
                          aabb_size=(2.0, 1.5, 0.75), obb_center=(1.0, -2.5, 0.375), obb_yaw=0.3,
                          obb_size=(2.25, 1.25, 0.875)),
                 Instance(id=9, class_id=2, class_name="chair", score=0.5, point_count=80,
                          centroid=(0.0, 0.0, 0.0), aabb_center=(0.5, 0.5, 0.5), aabb_size=(0.25, 0.25, 0.5),
                          obb_center=(0.5, 0.5, 0.5), obb_yaw=-0.5, obb_size=(0.25, 0.25, 0.5))]
    assert instances_from_message(instance_array(instances, Header(), 0.5)) == instances
