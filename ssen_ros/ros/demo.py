"""The ROS side of ``ssen demo``: listen to a running ``ssen_node`` and hand back its outputs as
library types (``Cloud``, ``Instance``), so the command line never imports rclpy."""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import Optional

import rclpy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from ssen_ros.instances import Instance
from ssen_ros.io import Cloud
from ssen_ros.io.pointcloud2 import cloud_from_pointcloud2
from ssen_ros.msg import InstanceArray
from ssen_ros.ros.convert import qos_profile
from ssen_ros.ros.stop_signals import stop_signals


@dataclass
class NodeOutputs:
    """What the node published for one map: the labelled cloud, its instances and marker count."""

    cloud: Cloud
    frame_id: str
    instances: list[Instance]
    processing_time: float
    num_markers: int


def instances_from_message(array: InstanceArray) -> list[Instance]:
    """The inverse of ``convert.instance_array`` for the instances it carries."""
    def xyz(v) -> tuple[float, float, float]:
        return (v.x, v.y, v.z)

    return [Instance(id=m.id, class_id=m.class_id, class_name=m.class_name, score=m.score,
                     point_count=m.point_count, centroid=xyz(m.centroid), aabb_center=xyz(m.aabb_center),
                     aabb_size=xyz(m.aabb_size), obb_center=xyz(m.obb_center), obb_yaw=m.obb_yaw,
                     obb_size=xyz(m.obb_size))
            for m in array.instances]


def receive(node_name: str, node: subprocess.Popen, timeout: float) -> Optional[NodeOutputs]:
    """The three latched outputs of node ``node_name`` (process ``node``), or None when the node
    exits, ``timeout`` seconds pass or SIGINT/SIGTERM come first."""
    got: dict = {}
    with stop_signals() as stop:
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        try:
            listener = rclpy.create_node("ssen_demo")
            latched = qos_profile("reliable", "transient_local", 1)
            for name, kind in (("labeled_cloud", PointCloud2), ("instances", InstanceArray),
                               ("markers", MarkerArray)):
                listener.create_subscription(kind, f"/{node_name}/{name}",
                                             lambda msg, name=name: got.__setitem__(name, msg),
                                             latched)
            deadline = time.monotonic() + timeout
            while (len(got) < 3 and time.monotonic() < deadline and node.poll() is None
                   and not stop.is_set()):
                rclpy.spin_once(listener, timeout_sec=0.2)
        finally:
            rclpy.try_shutdown()
    if len(got) < 3:
        return None
    cloud_msg, array = got["labeled_cloud"], got["instances"]
    return NodeOutputs(cloud_from_pointcloud2(cloud_msg), cloud_msg.header.frame_id,
                       instances_from_message(array), float(array.processing_time),
                       len(got["markers"].markers))
