"""The process harness of the node tests: a real ``ssen_node`` process and this pytest process
as a second ROS participant, talking over DDS.

- ``NodeProcess``: a running ``python -m ssen_ros.ros.entry --ros-args ...``; its log is collected.
- ``RosSide``: publishes maps on /map_cloud, receives a node's three outputs, calls its services.
- ``synthetic_room``, ``good_map``, ``node_args``, ``tiny_weights``, ``set_parameters``: the maps,
  arguments, weights and parameter changes the tests share.

The fixtures built on these (``weights``, ``ros_side``, ``node``) are in conftest.py. Import this
module only after ``pytest.importorskip("rclpy")``.
"""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue, SetParametersResult
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ssen_ros import checkpoint
from ssen_ros.io import Cloud
from ssen_ros.msg import InstanceArray
from ssen_ros.ros.convert import cloud_message, qos_profile

REPO = Path(__file__).resolve().parent.parent
PARAMS_FILE = REPO / "config" / "ssen.yaml"
STARTUP_TIMEOUT_S = 90.0  # importing torch and DDS discovery on a loaded 2-core machine
OUTPUT_TIMEOUT_S = 60.0


def synthetic_room(n: int, seed: int = 0, offset=(0.0, 0.0, 0.0)) -> Cloud:
    """A 4 x 4 m room: floor, two walls and three boxes, points on their surfaces, coloured."""
    rng = np.random.default_rng(seed)
    parts, colors = [], []

    def add(p, color):
        parts.append(p)
        colors.append(np.clip(rng.normal(color, 8, (len(p), 3)), 0, 255))

    k = n // 7
    add(np.c_[rng.uniform(0, 4, (2 * k, 2)), np.zeros(2 * k)], (150, 120, 90))
    add(np.c_[rng.uniform(0, 4, k), np.zeros(k), rng.uniform(0, 2.5, k)], (220, 220, 210))
    add(np.c_[np.zeros(k), rng.uniform(0, 4, k), rng.uniform(0, 2.5, k)], (220, 220, 210))
    for i, (center, size) in enumerate([((1, 1, 0.45), (0.5, 0.5, 0.9)), ((2.5, 2, 0.4), (1.2, 0.8, 0.8)),
                                        ((1, 3, 0.4), (1.8, 0.9, 0.8))]):
        m = k if i < 2 else n - 6 * k
        p = rng.uniform(-0.5, 0.5, (m, 3))
        face = rng.integers(0, 3, m)
        p[np.arange(m), face] = rng.choice([-0.5, 0.5], m)
        add(np.asarray(center) + p * size, (40 + 80 * i, 90, 200 - 60 * i))
    points = (np.concatenate(parts) + offset).astype(np.float32)
    return Cloud(points, np.concatenate(colors).astype(np.uint8))


class NodeProcess:
    """A running ``python -m ssen_ros.ros.node``; its stderr (the ROS log) is collected."""

    def __init__(self, start: Callable, *ros_args: str):
        self.proc = start("-m", "ssen_ros.ros.entry", "--ros-args", *ros_args)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        for stream in (self.proc.stderr, self.proc.stdout):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if re.search(pattern, line)]

    def wait_for(self, pattern: str, timeout: float = OUTPUT_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(pattern)
            if found:
                return found[-1]
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the drain threads finish
                found = self.matching(pattern)
                if found:
                    return found[-1]
                raise AssertionError(f"node exited ({self.proc.returncode}) before logging "
                                     f"{pattern!r}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"node did not log {pattern!r} in {timeout} s:\n{self.log()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_busy(self, timeout: float = OUTPUT_TIMEOUT_S) -> None:
        """Until the process uses at least half a core over half a second (it is segmenting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(0.5)
            if self.cpu_seconds() - before >= 0.25:
                return
        raise AssertionError(f"the node did not get busy in {timeout} s:\n{self.log()}")

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


class RosSide:
    """This pytest process as a ROS participant: publishes maps, receives the node's outputs."""

    def __init__(self, env: dict[str, str]):
        self._saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # discovery range and Fast DDS profile are read from the environment
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(env["ROS_DOMAIN_ID"]))
        self.node = rclpy.create_node("ssen_test", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.publisher = self.node.create_publisher(PointCloud2, "/map_cloud", qos_profile())
        self.received: dict[str, list] = {"instances": [], "labeled_cloud": [], "markers": []}
        self.watch("ssen_node")
        self._stamp = 0
        self._matched: set = set()

    def watch(self, node_name: str) -> None:
        """Receive the outputs of the node called ``node_name`` (into ``received``)."""
        # transient_local: outputs published before this reader matched still arrive (they are latched)
        outputs = qos_profile("reliable", "transient_local", 50)
        for name, kind in (("instances", InstanceArray), ("labeled_cloud", PointCloud2),
                           ("markers", MarkerArray)):
            self.node.create_subscription(kind, f"/{node_name}/{name}", self.received[name].append,
                                          outputs)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def next_header(self, frame_id: str = "map_test") -> Header:
        """A header with a stamp no other map of this session has."""
        self._stamp += 1
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = 1000 + self._stamp, 500
        return header

    def publish(self, msg: PointCloud2, publisher=None) -> None:
        """Publish on /map_cloud (or ``publisher``), the first time once a node subscribed."""
        publisher = publisher or self.publisher
        if publisher not in self._matched:  # as the player does: let the node match us too
            self.spin_until(lambda: publisher.get_subscription_count() > 0, STARTUP_TIMEOUT_S,
                            f"a subscriber on {publisher.topic_name}")
            settled = time.monotonic() + 1.0
            self.spin_until(lambda: time.monotonic() > settled, 2.0, "discovery to settle")
            self._matched.add(publisher)
        publisher.publish(msg)

    def outputs(self, header: Header, timeout: float = OUTPUT_TIMEOUT_S) -> dict[str, object]:
        """The node's three messages for the map with ``header``'s stamp."""
        def find():
            found = {}
            for name, msgs in self.received.items():
                for m in msgs:
                    first = m.markers[0] if name == "markers" else m
                    if first.header.stamp == header.stamp:
                        found[name] = m
            return found
        self.spin_until(lambda: len(find()) == 3, timeout, f"the outputs for stamp {header.stamp.sec}")
        return find()

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        client = self.node.create_client(srv_type, f"/ssen_node/{name}")
        try:
            self.spin_until(client.service_is_ready, timeout, f"service {name}")
            future = client.call_async(request)
            self.spin_until(future.done, timeout, f"the reply of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)


def node_args(weights: Path, *extra: str) -> list[str]:
    """The shipped params file, then test settings: random tiny weights on the CPU, every class
    a possible instance (`[]`), small clusters, the 5M-point test map over max_points."""
    return ["--params-file", str(PARAMS_FILE), "-p", f"segmenter.weights:={weights}",
            "-p", "segmenter.backend:=torch", "-p", "segmenter.device:=cpu",
            "-p", "segmenter.background_classes:=[]", "-p", "segmenter.cluster.min_cluster_size:=50",
            "-p", "segmenter.max_points:=1000000", *extra]


def tiny_weights(path: Path) -> Path:
    """Random weights of the tiny architecture, saved at ``path``."""
    spec = checkpoint.ModelSpec(arch="Res16UNet14S", voxel_size=0.1)
    checkpoint.save(path, spec, *checkpoint.build_pair(spec, backend="torch"))
    return path


def good_map(ros_side: RosSide, cloud: Cloud) -> tuple[PointCloud2, Header]:
    """``cloud`` as a map message with a fresh header."""
    header = ros_side.next_header()
    return cloud_message(cloud, header), header


def parameter_value(v: object) -> ParameterValue:
    """A Python value as the ROS parameter value of its type (a list by its items' type)."""
    if isinstance(v, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v)
    if isinstance(v, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=v)
    if isinstance(v, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=v)
    if isinstance(v, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)
    if all(isinstance(x, str) for x in v):
        return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=v)
    return ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=v)


def set_parameters(ros_side: RosSide, **changes: object) -> SetParametersResult:
    """Set parameters of ssen_node in one atomic request (``a__b`` names ``a.b``)."""
    request = SetParametersAtomically.Request(parameters=[
        ParameterMsg(name=k.replace("__", "."), value=parameter_value(v)) for k, v in changes.items()])
    return ros_side.call(SetParametersAtomically, "set_parameters_atomically", request).result
