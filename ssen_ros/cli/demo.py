"""``ssen demo``: the main job on the embedded default, over real ROS 2.

Starts ``ssen_node`` with the shipped weights and a player that publishes the bundled map
(``ssen_ros/data/demo_map.pcd``: synthetic test room 20004, never trained on, with its labels)
as a latched PointCloud2. It waits for the node's three outputs, then writes what it received to
OUT: ``segmentation.png`` (top-down and oblique views coloured by instance, "class score" at each
object), ``labeled.ply`` and ``instances.json``, prints the object list, and scores it against the
map's labels with the ScanNet benchmark (``ssen_ros.evaluate``).
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

DEMO_MAP = Path(__file__).resolve().parents[1] / "data" / "demo_map.pcd"
NODE = "ssen_node"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--map", type=Path, default=DEMO_MAP, help="cloud file to publish")
    parser.add_argument("--weights", default="default", help="weights file (default: shipped)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for results")


def _ros_environment() -> None:
    """An isolated DDS domain on this machine, with the large-cloud Fast DDS profile (FACTS §4)."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = Path(__file__).resolve().parents[2] / "config" / "fastdds.xml"
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))


def run(args: argparse.Namespace) -> int:
    if not args.map.is_file():
        print(f"ssen demo: map {args.map} does not exist", file=sys.stderr)
        return 2
    _ros_environment()
    node = subprocess.Popen([sys.executable, "-m", "ssen_ros.ros.entry", "--ros-args",
                             "-p", f"segmenter.weights:={args.weights}"])
    # Published again every 10 s: a latched map sent right after discovery can be lost (Fast DDS
    # #3822); the node coalesces repeats, so they cost nothing while it is busy.
    player = subprocess.Popen([sys.executable, "-m", "ssen_ros.ros.player", str(args.map),
                               "--count", "60", "--rate", "0.1", "--linger", "-1"],
                              stdout=subprocess.DEVNULL)
    try:
        received = _receive(node, args.timeout)
    finally:
        for proc in (player, node):
            proc.send_signal(signal.SIGINT)
        for proc in (player, node):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    if received is None:
        print(f"ssen demo: no result from {NODE} (see its log above)", file=sys.stderr)
        return 1
    return _report(args, *received)


def _receive(node: subprocess.Popen, timeout: float):
    """(labeled cloud, instance array, marker count) from the node, or None if it failed."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray

    from ssen_ros.msg import InstanceArray
    from ssen_ros.ros.convert import qos_profile

    rclpy.init()
    got: dict = {}
    try:
        listener = rclpy.create_node("ssen_demo")
        latched = qos_profile("reliable", "transient_local", 1)
        for name, kind in (("labeled_cloud", PointCloud2), ("instances", InstanceArray),
                           ("markers", MarkerArray)):
            listener.create_subscription(kind, f"/{NODE}/{name}",
                                         lambda msg, name=name: got.__setitem__(name, msg), latched)
        deadline = time.monotonic() + timeout
        while len(got) < 3 and time.monotonic() < deadline and node.poll() is None:
            rclpy.spin_once(listener, timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        return None
    finally:
        rclpy.try_shutdown()
    if len(got) < 3:
        return None
    return got["labeled_cloud"], got["instances"], len(got["markers"].markers)


def _report(args: argparse.Namespace, cloud_msg, array_msg, num_markers: int) -> int:
    import numpy as np

    from ssen_ros.cli.segment import summary_table, write_outputs
    from ssen_ros.config import SegmenterConfig
    from ssen_ros.evaluate import evaluate_scenes
    from ssen_ros.instances import Instance
    from ssen_ros.io import read_cloud
    from ssen_ros.io.pointcloud2 import cloud_from_pointcloud2
    from ssen_ros.scoring import predictions
    from ssen_ros.segmenter import Segmentation

    cloud = cloud_from_pointcloud2(cloud_msg)
    instances = [Instance(id=m.id, class_id=m.class_id, class_name=m.class_name, score=m.score,
                          point_count=m.point_count, centroid=(m.centroid.x, m.centroid.y, m.centroid.z),
                          aabb_center=(m.aabb_center.x, m.aabb_center.y, m.aabb_center.z),
                          aabb_size=(m.aabb_size.x, m.aabb_size.y, m.aabb_size.z),
                          obb_center=(m.obb_center.x, m.obb_center.y, m.obb_center.z), obb_yaw=m.obb_yaw,
                          obb_size=(m.obb_size.x, m.obb_size.y, m.obb_size.z))
                 for m in array_msg.instances]
    result = Segmentation(cloud.fields["label"].astype(np.int64), cloud.fields["instance"].astype(np.int64),
                          instances, {"total": float(array_msg.processing_time)})
    info = {"path": str(args.map), "frame_id": cloud_msg.header.frame_id, "points": len(cloud),
            "markers": num_markers}
    paths = write_outputs(args.out, cloud.points, result, info, SegmenterConfig(weights=args.weights))
    print(summary_table(result))
    print(f"{NODE} published {len(cloud):,} labelled points, {len(instances)} instances and "
          f"{num_markers} markers in frame '{cloud_msg.header.frame_id}'")
    truth = read_cloud(args.map)
    if {"label", "instance"} <= set(truth.fields) and len(truth) == len(cloud):
        score = evaluate_scenes([(truth.fields["label"].astype(np.int64),
                                  truth.fields["instance"].astype(np.int64), predictions(result))])
        print(f"against the map's labels: AP {score.mean_ap:.3f}, AP50 {score.ap50:.3f}, "
              f"AP25 {score.ap25:.3f} (ScanNet rules)")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
