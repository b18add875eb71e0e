"""A small publisher that plays a cloud file as sensor_msgs/PointCloud2 (demo, tests, benchmarks).

``python -m ssen_ros.ros.player CLOUD [--topic map_cloud] [--frame-id map] [--count N]
[--rate HZ] [--reliability ...] [--durability ...] [--wait S] [--linger S]`` reads a PLY, PCD
or ScanNet scene folder (``ssen_ros.io.read_cloud``), waits until something subscribes,
publishes it ``count`` times at ``rate`` Hz with a fresh stamp each time, then keeps the
publisher alive ``linger`` seconds (-1: until SIGINT/SIGTERM) so reliable and latched
(transient_local) deliveries complete. SIGINT or SIGTERM at any point ends it with code 0.
Remapping and other ROS arguments go after ``--ros-args``.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Optional

import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from ssen_ros.io import Cloud, read_cloud
from ssen_ros.ros.convert import cloud_message, qos_profile
from ssen_ros.ros.stop_signals import stop_signals


class CloudPlayer(Node):
    """Publishes one cloud on ``topic`` with the given QoS; ``publish()`` stamps it now."""

    def __init__(self, cloud: Cloud, topic: str = "map_cloud", frame_id: str = "map",
                 reliability: str = "reliable", durability: str = "transient_local", depth: int = 1,
                 stop: Optional[threading.Event] = None, **kwargs):
        super().__init__("ssen_player", **kwargs)
        self.stop = threading.Event() if stop is None else stop
        self.message = cloud_message(cloud, Header(frame_id=frame_id))
        self.publisher = self.create_publisher(PointCloud2, topic,
                                               qos_profile(reliability, durability, depth))

    def wait_for_subscriber(self, timeout: float, settle: float = 1.0) -> bool:
        """True once something subscribes (DDS discovery takes 0-5 s), False after ``timeout``
        or once ``stop`` is set.

        Then waits ``settle`` seconds more: the publisher can see the subscriber before the
        subscriber has matched the publisher, and a latched sample sent in that window is
        sometimes never delivered (Fast DDS issue #3822, seen here about 1 in 7 runs; eProsima's
        own late-joiner example sleeps for the same reason, Fast-DDS PR #2214).
        """
        deadline = time.monotonic() + timeout
        while self.publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline or self.stop.is_set():
                return False
            rclpy.spin_once(self, timeout_sec=0.05)
        self.spin_for(settle)
        return not self.stop.is_set()

    def spin_for(self, seconds: float) -> None:
        """Serve DDS for ``seconds``, or until ``stop`` is set."""
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=min(0.1, max(0.0, end - time.monotonic())))

    def publish(self) -> PointCloud2:
        """Publish the cloud stamped with the current ROS time; returns the message sent."""
        self.message.header.stamp = self.get_clock().now().to_msg()
        self.publisher.publish(self.message)
        return self.message


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m ssen_ros.ros.player",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("cloud", help="PLY, PCD or ScanNet scene folder")
    parser.add_argument("--topic", default="map_cloud")
    parser.add_argument("--frame-id", default="map")
    parser.add_argument("--count", type=int, default=1, help="how many times to publish")
    parser.add_argument("--rate", type=float, default=1.0, help="publications per second")
    parser.add_argument("--reliability", default="reliable", choices=["reliable", "best_effort"])
    parser.add_argument("--durability", default="transient_local",
                        choices=["transient_local", "volatile"])
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a subscriber")
    parser.add_argument("--linger", type=float, default=2.0,
                        help="seconds to stay after the last publication (-1: until stopped)")
    args = parser.parse_args(remove_ros_args(argv)[1:])
    cloud = read_cloud(args.cloud)
    with stop_signals() as stop:
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        try:
            player = CloudPlayer(cloud, args.topic, args.frame_id, args.reliability,
                                 args.durability, stop=stop)
            log = player.get_logger()
            if not player.wait_for_subscriber(args.wait) and not stop.is_set():
                log.warning(f"no subscriber on {player.publisher.topic_name} after {args.wait} s; "
                            "publishing anyway")
            for k in range(args.count):
                if k:
                    player.spin_for(1.0 / args.rate)
                if stop.is_set():
                    break
                player.publish()
                log.info(f"published {len(cloud)} points from {args.cloud} on "
                         f"{player.publisher.topic_name}")
            player.spin_for(float("inf") if args.linger < 0 else args.linger)
        finally:
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
