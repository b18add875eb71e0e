"""``ssen demo``: the main job on the embedded default, over real ROS 2.

Starts ``ssen_node`` with the shipped weights and a player that publishes the bundled map
(``ssen_ros/synthetic/demo_map.pcd``: synthetic test room 20004, never trained on, with its labels)
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
from pathlib import Path
from typing import TYPE_CHECKING

from ssen_ros.cli import at_least, check_output

if TYPE_CHECKING:
    from ssen_ros.ros.demo import NodeOutputs

DEMO_MAP = Path(__file__).resolve().parents[1] / "synthetic" / "demo_map.pcd"
NODE = "ssen_node"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--map", type=Path, default=DEMO_MAP, help="cloud file to publish")
    parser.add_argument("--weights", default="default", help="weights file (default: shipped)")
    parser.add_argument("--timeout", type=at_least(0.0, above=True), default=600.0,
                        help="seconds to wait for results")


def _ros_environment() -> None:
    """An isolated DDS domain on this machine, with the large-cloud Fast DDS profile
    (``config/fastdds.xml`` says why)."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = Path(__file__).resolve().parents[2] / "config" / "fastdds.xml"
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))


def run(args: argparse.Namespace) -> int:
    from ssen_ros.io import read_cloud

    if not args.map.exists():
        print(f"ssen demo: map {args.map} does not exist", file=sys.stderr)
        return 2
    check_output(args.out, "-o", folder=True)
    read_cloud(args.map)  # a map the player cannot read fails here, in one line, before any process starts
    _ros_environment()
    node = subprocess.Popen([sys.executable, "-m", "ssen_ros.ros.entry", "--ros-args",
                             "-p", f"segmenter.weights:={args.weights}"])
    # Published again every 10 s: a latched map sent right after discovery can be lost (Fast DDS
    # #3822); the node coalesces repeats, so they cost nothing while it is busy.
    player = subprocess.Popen([sys.executable, "-m", "ssen_ros.ros.player", str(args.map),
                               "--count", "60", "--rate", "0.1", "--linger", "-1"],
                              stdout=subprocess.DEVNULL)
    try:
        from ssen_ros.ros.demo import receive  # the only part of the demo that needs rclpy

        received = receive(NODE, node, args.timeout)
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
    return _report(args, received)


def _report(args: argparse.Namespace, received: "NodeOutputs") -> int:
    import numpy as np

    from ssen_ros.cli.segment import summary_table, write_outputs
    from ssen_ros.config import SegmenterConfig
    from ssen_ros.evaluate import evaluate_scenes
    from ssen_ros.io import read_cloud
    from ssen_ros.scoring import predictions
    from ssen_ros.segmentation import Segmentation

    cloud, instances = received.cloud, received.instances
    result = Segmentation(cloud.fields["label"].astype(np.int64), cloud.fields["instance"].astype(np.int64),
                          instances, {"total": received.processing_time})
    info = {"path": str(args.map), "frame_id": received.frame_id, "points": len(cloud),
            "markers": received.num_markers}
    paths = write_outputs(args.out, cloud.points, result, info, SegmenterConfig(weights=args.weights))
    print(summary_table(result))
    print(f"{NODE} published {len(cloud):,} labelled points, {len(instances)} instances and "
          f"{received.num_markers} markers in frame '{received.frame_id}'")
    truth = read_cloud(args.map)
    if {"label", "instance"} <= set(truth.fields) and len(truth) == len(cloud):
        score = evaluate_scenes([(truth.fields["label"].astype(np.int64),
                                  truth.fields["instance"].astype(np.int64), predictions(result))])
        print(f"against the map's labels: AP {score.mean_ap:.3f}, AP50 {score.ap50:.3f}, "
              f"AP25 {score.ap25:.3f} (ScanNet rules)")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
