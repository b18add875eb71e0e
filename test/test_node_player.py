"""The map player (ssen_ros.ros.player) as `ssen demo` runs it: a played file is segmented by a
real node process, and the player exits cleanly when stopped between publications or while it
waits for a subscriber."""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")

from node_harness import OUTPUT_TIMEOUT_S, synthetic_room  # noqa: E402
from ssen_ros.io.pointcloud2 import cloud_from_pointcloud2  # noqa: E402


@pytest.mark.ros
def test_player_publishes_a_cloud_file_that_the_node_segments(node, ros_side, ros_python, tmp_path):
    from ssen_ros.io.ply import write_ply
    cloud = synthetic_room(3000, seed=11)
    write_ply(tmp_path / "room.ply", cloud)
    # as `ssen demo` runs it: republishing every 10 s until stopped with SIGINT
    player = ros_python("-m", "ssen_ros.ros.player", str(tmp_path / "room.ply"), "--frame-id",
                        "player_frame", "--count", "60", "--rate", "0.1", "--linger", "-1")

    def from_player():
        return [m for m in ros_side.received["labeled_cloud"] if m.header.frame_id == "player_frame"]
    ros_side.spin_until(lambda: from_player(), OUTPUT_TIMEOUT_S, "the output for the played file")
    back = cloud_from_pointcloud2(from_player()[0])
    np.testing.assert_array_equal(back.points, cloud.points)
    player.send_signal(signal.SIGINT)  # while it waits for the next publication
    _, err = player.communicate(timeout=30)
    assert f"published 3000 points from {tmp_path / 'room.ply'} on /map_cloud" in err
    assert player.returncode == 0 and "Traceback" not in err, err


@pytest.mark.ros
def test_player_stopped_between_publications_exits_cleanly(ros_python, tmp_path):
    from ssen_ros.io.ply import write_ply
    write_ply(tmp_path / "room.ply", synthetic_room(500, seed=12))
    # started the way `cmd &` in a script starts it: SIGINT ignored, so Python raises no
    # KeyboardInterrupt and only rclpy's handler (shutting the context down) sees the signal
    argv = [str(tmp_path / "room.ply"), "--wait", "0.5", "--count", "60", "--rate", "0.1", "--linger", "-1"]
    player = ros_python("-c", "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                        f"sys.argv = ['player'] + {argv!r}; "
                        "runpy.run_module('ssen_ros.ros.player', run_name='__main__')")
    deadline = time.monotonic() + 30
    published = False
    while not published and time.monotonic() < deadline:  # stderr: the log lines
        published = "published 500 points" in (player.stderr.readline() or "")
    assert published, "the player did not publish"
    time.sleep(1.0)  # now inside the 10 s wait for the next publication
    player.send_signal(signal.SIGINT)
    _, err = player.communicate(timeout=30)
    assert player.returncode == 0 and "Traceback" not in err, err


@pytest.mark.ros
def test_player_stopped_while_waiting_for_a_subscriber_exits_promptly(ros_side, ros_python, tmp_path):
    from ssen_ros.io.ply import write_ply
    write_ply(tmp_path / "room.ply", synthetic_room(500, seed=13))
    player = ros_python("-m", "ssen_ros.ros.player", str(tmp_path / "room.ply"), "--topic",
                        "nobody_listens", "--wait", "60")
    ros_side.spin_until(lambda: ros_side.node.count_publishers("/nobody_listens") > 0, 30,
                        "the player's publisher")  # so it now waits for a subscriber
    player.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = player.communicate(timeout=30)
    assert player.returncode == 0 and "Traceback" not in err, err
    assert time.monotonic() - t0 < 2.0
    assert "published" not in err
