"""The node's map subscription QoS with real processes over DDS: an incompatible publisher gets
one line naming the parameter; with auto QoS the node hears default, best-effort and latched
publishers."""
from __future__ import annotations

import re
import signal
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")

from sensor_msgs.msg import PointCloud2  # noqa: E402

from node_harness import STARTUP_TIMEOUT_S, NodeProcess, good_map, node_args, synthetic_room  # noqa: E402
from ssen_ros.ros.convert import qos_profile  # noqa: E402


@pytest.mark.ros
def test_a_best_effort_publisher_after_a_reliable_one_gets_one_line_naming_the_parameter(node, ros_side):
    node.wait_for(r"subscribed to /map_cloud with reliable")  # chosen for this side's publisher
    late = ros_side.node.create_publisher(PointCloud2, "/map_cloud", qos_profile("best_effort", "volatile"))
    line = node.wait_for(r"offers incompatible QoS")
    assert re.search(r"a publisher on /map_cloud offers incompatible QoS \(reliability\): no map from it "
                     r"is received; this subscription is reliable, a publisher offers best_effort; "
                     r"set parameter reliability to auto or to what the publisher offers", line), line
    time.sleep(1.0)
    assert len(node.matching("incompatible QoS")) == 1 and not node.matching("New publisher discovered")
    ros_side.node.destroy_publisher(late)


@pytest.mark.ros
def test_auto_qos_hears_default_best_effort_and_latched_publishers(ros_python, weights, ros_side):
    """The default parameters receive from ROS 2's default publisher (reliable, volatile), from
    a best_effort one, and a latched map published before the node started."""
    kinds = {"volatile": ("reliable", "volatile"), "besteffort": ("best_effort", "volatile"),
             "latched": ("reliable", "transient_local")}
    publishers = {k: ros_side.node.create_publisher(PointCloud2, f"/qos_{k}", qos_profile(*q))
                  for k, q in kinds.items()}
    latched, latched_header = good_map(ros_side, synthetic_room(3000, seed=30))
    publishers["latched"].publish(latched)  # nobody subscribes yet
    nodes = {k: NodeProcess(ros_python, *node_args(weights), "-r", f"__node:=ssen_{k}",
                            "-r", f"map_cloud:=/qos_{k}") for k in kinds}
    for k, n in nodes.items():
        ros_side.watch(f"ssen_{k}")
        n.wait_for("ready: segmenting maps", STARTUP_TIMEOUT_S)
    assert ros_side.outputs(latched_header)["instances"].instances
    for k in ("volatile", "besteffort"):
        msg, header = good_map(ros_side, synthetic_room(3000, seed=31))
        ros_side.publish(msg, publishers[k])
        assert ros_side.outputs(header)["labeled_cloud"].width == 3000
    for k, (reliability, durability) in kinds.items():
        nodes[k].wait_for(rf"subscribed to /qos_{k} with {reliability}, {durability}, depth 1, "
                          rf"matching its 1 publisher\(s\) \(offering {reliability}, {durability}; "
                          rf"parameters reliability: auto, durability: auto\)")
        assert not nodes[k].matching(r"\[(WARN|ERROR)\]"), nodes[k].log()
        nodes[k].proc.send_signal(signal.SIGINT)
    for pub in publishers.values():
        ros_side.node.destroy_publisher(pub)
