"""The generated messages msg/Instance.msg and msg/InstanceArray.msg over real DDS.

A publisher process sends one InstanceArray with every field set to a distinct, non-default
value, and a subscriber process (another OS process, another DDS participant) receives it; the
test checks every field. This file is also the child program:
``python test/test_messages.py publish|subscribe TOPIC``.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.ros

DISCOVERY_TIMEOUT_S = 20.0  # discovery normally takes 0-5 s; the machine may be busy
RECEIVE_TIMEOUT_S = 30.0


def make_message() -> Any:
    """An InstanceArray of three instances in which no two numbers or strings are equal and none
    is its type's default: a field dropped, swapped or truncated in transit cannot go unseen.
    float32 fields hold values exact in float32; the float64 yaw holds values that are not."""
    from geometry_msgs.msg import Point, Vector3

    from ssen_ros.msg import Instance, InstanceArray

    counter = itertools.count(1)

    def f32() -> float:
        return next(counter) + 0.5

    def point() -> Point:
        return Point(x=f32(), y=-f32(), z=f32())

    def vector() -> Vector3:
        return Vector3(x=f32(), y=f32(), z=f32())

    def instance(k: int) -> Instance:
        return Instance(
            id=4_000_000_000 + next(counter),  # above 2**31: catches a signed/narrow id
            class_id=next(counter),
            class_name=f"class_{k}",
            score=next(counter) / 64.0,
            centroid=point(),
            aabb_center=point(),
            aabb_size=vector(),
            obb_center=point(),
            obb_yaw=next(counter) + 0.1,  # not exact in float32: catches a float32 yaw
            obb_size=vector(),
            point_count=3_000_000_000 + next(counter),
        )

    msg = InstanceArray(instances=[instance(k) for k in range(3)], processing_time=f32())
    msg.header.stamp.sec = 1_700_000_000 + next(counter)
    msg.header.stamp.nanosec = 123_456_789
    msg.header.frame_id = "ssen_test_frame"
    return msg


def to_dict(msg: Any) -> Any:
    """A ROS message as plain dicts, lists and scalars (the shape json can carry)."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: to_dict(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)):
        return [to_dict(item) for item in msg]
    return msg


def leaves(tree: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, value) for every scalar in a to_dict() tree."""
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in leaves(value, f"{path}.{key}")]
    if isinstance(tree, list):
        return [leaf for i, value in enumerate(tree) for leaf in leaves(value, f"{path}[{i}]")]
    return [(path, tree)]


def test_make_message_sets_every_field_to_a_distinct_non_default_value() -> None:
    from ssen_ros.msg import Instance, InstanceArray

    sent = to_dict(make_message())
    default = to_dict(InstanceArray(instances=[Instance() for _ in sent["instances"]]))
    sent_leaves, default_leaves = leaves(sent), leaves(default)
    assert [path for path, _ in sent_leaves] == [path for path, _ in default_leaves]
    same_as_default = [p for (p, v), (_, d) in zip(sent_leaves, default_leaves) if v == d]
    assert same_as_default == []
    values = [value for _, value in sent_leaves]
    assert len(set(values)) == len(values), "two fields hold the same value"


def test_instance_array_round_trip_between_processes(ros_python) -> None:
    topic = f"/ssen_test/instances_{uuid.uuid4().hex[:12]}"
    start = time.monotonic()
    subscriber = ros_python(__file__, "subscribe", topic)
    publisher = ros_python(__file__, "publish", topic)
    sub_out, sub_err = subscriber.communicate(timeout=DISCOVERY_TIMEOUT_S + RECEIVE_TIMEOUT_S + 15)
    assert subscriber.returncode == 0, f"subscriber failed:\n{sub_err}"
    pub_out, pub_err = publisher.communicate(timeout=DISCOVERY_TIMEOUT_S + 15)
    assert publisher.returncode == 0, f"publisher failed:\n{pub_err}"
    print(f"round trip with process start-up: {time.monotonic() - start:.2f} s")

    received = json.loads(sub_out.strip().splitlines()[-1])
    assert received == to_dict(make_message())


# --- the child processes --------------------------------------------------------------------------

def _qos() -> Any:
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
    )


def _publish(topic: str) -> int:
    """Wait for a subscriber, then publish every 0.1 s until it has gone again (it leaves after
    the first message it gets). Exit 0 also on SIGINT/SIGTERM."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from ssen_ros.msg import InstanceArray

    rclpy.init()
    node = rclpy.create_node("ssen_test_publisher")
    publisher = node.create_publisher(InstanceArray, topic, _qos())
    msg = make_message()
    try:
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                print(f"no subscriber on {topic} after {DISCOVERY_TIMEOUT_S} s", file=sys.stderr)
                return 1
            rclpy.spin_once(node, timeout_sec=0.05)
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while publisher.get_subscription_count() > 0:
            if time.monotonic() > deadline:
                print(f"the subscriber stayed for {RECEIVE_TIMEOUT_S} s", file=sys.stderr)
                return 1
            publisher.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.1)
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def _subscribe(topic: str) -> int:
    """Receive one InstanceArray and print it as one line of JSON."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from ssen_ros.msg import InstanceArray

    rclpy.init()
    node = rclpy.create_node("ssen_test_subscriber")
    received: list[Any] = []
    node.create_subscription(InstanceArray, topic, received.append, _qos())
    try:
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S + RECEIVE_TIMEOUT_S
        while not received:
            if time.monotonic() > deadline:
                print(f"nothing received on {topic}", file=sys.stderr)
                return 1
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        print("shut down before a message arrived", file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(to_dict(received[0])))
    return 0


if __name__ == "__main__":
    role, topic_name = sys.argv[1], sys.argv[2]
    sys.exit({"publish": _publish, "subscribe": _subscribe}[role](topic_name))
