"""The node process's start and end: missing weights or a backend that cannot run stop the start
with a message, SIGINT and SIGTERM end it cleanly and quickly, idle, busy or still starting."""
from __future__ import annotations

import signal
import time

import pytest

pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")

from sensor_msgs.msg import PointCloud2  # noqa: E402

from node_harness import STARTUP_TIMEOUT_S, NodeProcess, node_args, synthetic_room  # noqa: E402
from ssen_ros.ros.convert import cloud_message, qos_profile  # noqa: E402


@pytest.mark.ros
def test_missing_weights_stop_the_start_with_a_message_naming_them(ros_python, tmp_path):
    missing = tmp_path / "no_such_weights.pt"
    proc = ros_python("-m", "ssen_ros.ros.entry", "--ros-args", "-p", f"segmenter.weights:={missing}")
    _, err = proc.communicate(timeout=STARTUP_TIMEOUT_S)
    assert proc.returncode == 1
    assert f"cannot start: weights file {missing} does not exist" in err
    assert "Traceback" not in err


@pytest.mark.ros
def test_a_backend_that_cannot_run_stops_the_start_with_a_message_naming_it(ros_python, weights):
    """spconv hidden from the process (``sys.modules`` entry None): one fatal line, exit 1."""
    start = ("import sys; sys.modules['spconv'] = None; from ssen_ros.ros.entry import main; "
             "main(sys.argv[1:])")
    proc = ros_python("-c", start, "--ros-args", *node_args(weights, "-p", "segmenter.backend:=spconv"))
    _, err = proc.communicate(timeout=STARTUP_TIMEOUT_S)
    assert proc.returncode == 1
    assert "] [ssen_node]: cannot start: backend 'spconv' cannot run here: No module named 'spconv" in err
    assert "Traceback" not in err


def _signal_exit_seconds(node: NodeProcess, sig: int) -> float:
    t0 = time.monotonic()
    node.proc.send_signal(sig)
    node.proc.wait(timeout=30)
    return time.monotonic() - t0


@pytest.mark.ros
def test_sigint_when_idle_and_sigterm_during_a_segmentation_exit_cleanly_within_2s(
        ros_python, weights, ros_side):
    idle = NodeProcess(ros_python, *node_args(weights), "-r", "__node:=ssen_idle",
                       "-r", "map_cloud:=/idle_map")
    busy = NodeProcess(ros_python, *node_args(weights, "-p", "segmenter.tta_rotations:=36"),
                       "-r", "__node:=ssen_busy", "-r", "map_cloud:=/busy_map")
    for n in (idle, busy):
        n.wait_for("ready: segmenting maps", STARTUP_TIMEOUT_S)
    busy_pub = ros_side.node.create_publisher(PointCloud2, "/busy_map", qos_profile())
    ros_side.publish(cloud_message(synthetic_room(30_000), ros_side.next_header()), busy_pub)
    busy.wait_busy()  # delivered and being segmented: 36 rotations take several seconds
    idle_s = _signal_exit_seconds(idle, signal.SIGINT)
    busy_s = _signal_exit_seconds(busy, signal.SIGTERM)
    assert idle_s < 2.0 and busy_s < 2.0, f"exit took {idle_s:.2f} s idle, {busy_s:.2f} s busy"
    assert not busy.matching(r"instances in"), "the map was finished before the signal"
    for n in (idle, busy):
        assert n.proc.returncode == 0, n.log()
        assert "Traceback" not in n.log() and not n.matching(r"\[(ERROR|FATAL)\]"), n.log()
    ros_side.node.destroy_publisher(busy_pub)


@pytest.mark.ros
def test_signals_during_start_up_exit_0_without_a_traceback(ros_python, weights):
    nodes = [(NodeProcess(ros_python, *node_args(weights), "-r", f"__node:=ssen_early{k}"), sig, delay)
             for k, (sig, delay) in enumerate([(signal.SIGINT, 1.0), (signal.SIGTERM, 1.5)])]
    t0 = time.monotonic()
    for n, sig, delay in nodes:
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        assert n.proc.poll() is None
        n.proc.send_signal(sig)
    for n, sig, _ in nodes:
        n.proc.wait(timeout=STARTUP_TIMEOUT_S)
        time.sleep(0.2)  # let the drain threads finish
        assert n.proc.returncode == 0 and "Traceback" not in n.log(), (sig, n.proc.returncode, n.log())
