"""A Python warning raised while a map is segmented becomes one WARN line of the node's log,
not raw lines on stderr: tested with a real node process whose map processing warns."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")

from node_harness import STARTUP_TIMEOUT_S, NodeProcess, good_map, node_args, synthetic_room  # noqa: E402

# The node, with MapProcessor.__call__ warning before it segments each map.
WARNING_NODE = """
import sys, warnings
from ssen_ros.ros import entry, node
segment = node.MapProcessor.__call__
def warn_then_segment(self, raw):
    warnings.warn("a test warning while segmenting", UserWarning)
    return segment(self, raw)
node.MapProcessor.__call__ = warn_then_segment
entry.main()
"""


@pytest.mark.ros
def test_a_warning_while_segmenting_is_one_node_log_line(ros_python, weights, ros_side):
    proc = NodeProcess(lambda _m, _entry, *args: ros_python("-c", WARNING_NODE, *args),
                       *node_args(weights), "-r", "__node:=ssen_warn")
    ros_side.watch("ssen_warn")
    proc.wait_for("ready: segmenting maps", STARTUP_TIMEOUT_S)
    msg, header = good_map(ros_side, synthetic_room(3000, seed=40))
    ros_side.publish(msg)
    ros_side.outputs(header)
    proc.wait_for(rf"stamp {header.stamp.sec}\.")
    mentions = proc.matching("a test warning while segmenting")
    assert len(mentions) == 1, proc.log()
    assert mentions[0].startswith("[WARN] ") and "[ssen_warn]: Python UserWarning: " in mentions[0], proc.log()
    assert not proc.matching(r"warnings\.warn\("), proc.log()  # the source line Python adds on stderr
