"""Hostile maps against a real ``ssen_node`` over DDS: deaths, log lines per map, latency, RSS.

``python -m benchmarks fuzz [--count 10000] [--good-every 25] [--seed 0] [--weights PATH]`` writes
``benchmarks/fuzz.md``. One node process (``python -m ssen_ros.ros.entry``, default parameters
but ``segmenter.max_points`` 100000 so that category is cheap to send) and this process as a
ROS 2 default publisher (reliable, volatile). Each message gets a stamp of its own and the next
is sent once the node's log names that stamp (or after ``--timeout`` s: the map counts as
silent), so no map is coalesced and each one's lines can be counted. Every ``--good-every``-th
message is a good map (a synthetic test room, ``bench.node.room_map``); its latency is publish
-> its ``~/instances`` received. The node's RSS is sampled every 100 messages.

Categories (``CATEGORIES``), drawn in turn with random sizes and positions: the malformed
layouts the node rejects (empty, all non-finite, no x, short data, unknown datatype, duplicate
field, field past point_step, short row_step, over max_points, over the tile budget) and the
odd but valid maps it segments (a few points, all at one spot, points at 8e19 m and near
float32's maximum, inf mixed in, a 100 kB frame id, separate r g b fields, no colour,
big-endian). The test suite runs the same harness on a few hundred messages
(test/test_fuzz.py).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from benchmarks import REPO
from benchmarks.node import bench_weights, room_map, ros_env
from ssen_ros.io import Cloud
from ssen_ros.io.pointcloud2 import FLOAT32, FLOAT64, UINT8

MAX_POINTS = 100_000
NODE_NAME = "ssen_fuzz"
TOPIC = "/fuzz_map"
MAX_LINE_CHARS = 1000
"""A log line longer than this counts as a failure: hostile input must not bloat the log."""


def _layout(msg, fields: list[tuple[str, int, int, int]]) -> None:
    from sensor_msgs.msg import PointField

    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]


def _xyz_fields(msg) -> list[tuple[str, int, int, int]]:
    return [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]


def _empty(rng, room) -> Cloud:
    return Cloud(np.zeros((0, 3), np.float32))


def _nonfinite(rng, room) -> Cloud:
    pts = np.full((int(rng.integers(1, 500)), 3), np.nan, np.float32)
    pts[::2, 1] = np.inf
    return Cloud(pts)


def _few(rng, room) -> Cloud:
    return Cloud(rng.uniform(-2, 2, (int(rng.integers(1, 20)), 3)).astype(np.float32))


def _one_spot(rng, room) -> Cloud:
    n = int(rng.integers(1, 3000))
    return Cloud(np.tile(rng.uniform(-50, 50, (1, 3)), (n, 1)).astype(np.float32),
                 np.full((n, 3), 100, np.uint8))


def _far(value: float) -> Callable:
    def make(rng, room) -> Cloud:
        pts = room.points[: int(rng.integers(200, 3000))].copy()
        k = int(rng.integers(1, 4))
        pts[:k, rng.integers(0, 3)] = value * rng.choice([-1.0, 1.0], k)
        return Cloud(pts, room.colors[: len(pts)])
    return make


def _inf_mixed(rng, room) -> Cloud:
    pts = room.points[: int(rng.integers(200, 3000))].copy()
    pts[rng.integers(0, len(pts), 20), rng.integers(0, 3)] = rng.choice([np.inf, -np.inf, np.nan])
    return Cloud(pts, room.colors[: len(pts)])


def _wide(rng, room) -> Cloud:
    pts = room.points[:1000].copy()
    pts[0, :2] = rng.uniform(5000, 9000, 2)  # within the coordinate limit, over the tile budget
    return Cloud(pts)


def _room_part(rng, room) -> Cloud:
    n = int(rng.integers(200, 3000))
    return Cloud(room.points[:n], room.colors[:n])


def _no_colour(rng, room) -> Cloud:
    return Cloud(room.points[: int(rng.integers(200, 3000))])


@dataclass
class Category:
    """A kind of hostile map: how to make its cloud, how to break its message, the line it
    must give ('rejected' or 'map')."""

    name: str
    cloud: Callable
    expect: str
    edit: Optional[Callable] = None
    frame_id: str = "fuzz"


def _drop_x(msg, rng) -> None:
    _layout(msg, [f for f in _xyz_fields(msg) if f[0] != "x"])


def _short_data(msg, rng) -> None:
    msg.data = bytes(msg.data)[: -int(rng.integers(1, msg.point_step))]


def _bad_datatype(msg, rng) -> None:
    _layout(msg, [(n, o, int(rng.choice([0, 9, 200])) if n == "y" else d, c) for n, o, d, c in _xyz_fields(msg)])


def _duplicate(msg, rng) -> None:
    _layout(msg, _xyz_fields(msg) + [("x", 0, FLOAT32, 1)])


def _past_step(msg, rng) -> None:
    _layout(msg, _xyz_fields(msg) + [("extra", msg.point_step - 2, FLOAT64, 1)])


def _short_row(msg, rng) -> None:
    msg.row_step = msg.point_step * msg.width - 1


def _too_many(msg, rng) -> None:
    msg.width = MAX_POINTS + 1
    msg.row_step = msg.point_step * msg.width
    msg.data = bytes(msg.row_step)


def _rgb_fields(msg, rng) -> None:
    """x y z as FLOAT32, then separate UINT8 r g b, as some drivers publish."""
    n = msg.width
    records = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"),
                                 ("b", "u1"), ("_", "u1")])
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(n, msg.point_step)
    for i, axis in enumerate("xyz"):
        records[axis] = raw[:, 4 * i:4 * i + 4].copy().view("<f4")[:, 0]
    records["r"], records["g"], records["b"] = raw[:, 14], raw[:, 13], raw[:, 12]  # packed b g r a
    _layout(msg, [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1),
                  ("r", 12, UINT8, 1), ("g", 13, UINT8, 1), ("b", 14, UINT8, 1)])
    msg.data = records.tobytes()


def _big_endian(msg, rng) -> None:
    words = np.frombuffer(bytes(msg.data), dtype="<u4")
    msg.data = words.byteswap().tobytes()  # every field is 4 bytes wide
    msg.is_bigendian = True


CATEGORIES: list[Category] = [
    Category("empty", _empty, "rejected"),
    Category("all non-finite", _nonfinite, "rejected"),
    Category("no x field", _room_part, "rejected", _drop_x),
    Category("short data", _room_part, "rejected", _short_data),
    Category("unknown datatype", _room_part, "rejected", _bad_datatype),
    Category("duplicate field", _room_part, "rejected", _duplicate),
    Category("field past point_step", _room_part, "rejected", _past_step),
    Category("short row_step", _room_part, "rejected", _short_row),
    Category("over max_points", _few, "rejected", _too_many),
    Category("over the tile budget", _wide, "rejected"),
    Category("a few points", _few, "map"),
    Category("all at one spot", _one_spot, "map"),
    Category("points at 8e19 m", _far(8e19), "map"),
    Category("points near float32 max", _far(3.4e38), "map"),
    Category("inf and NaN mixed in", _inf_mixed, "map"),
    Category("100 kB frame id", _room_part, "map", frame_id="f" * 100_000),
    Category("separate r g b fields", _room_part, "map", _rgb_fields),
    Category("no colour", _no_colour, "map"),
    Category("big-endian", _room_part, "map", _big_endian),
]


class NodeLog:
    """A running node process whose stdout and stderr lines are collected."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines, self._lock = proc, [], threading.Lock()
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def since(self, start: int) -> list[str]:
        with self._lock:
            return self.lines[start:]

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


@dataclass
class FuzzResult:
    """What a fuzz run saw; ``problems`` holds one text per message that broke a rule."""

    sent: dict[str, int] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)
    """Log lines the node printed per message (between its publish and the next one's)."""
    problems: list[str] = field(default_factory=list)
    good_latency_s: list[float] = field(default_factory=list)
    good_segmented: int = 0
    rss_mb: list[float] = field(default_factory=list)
    died: bool = False
    seconds: float = 0.0


def node_command(weights: str, random_weights: bool) -> list[str]:
    """The node process: default parameters, cheap max_points, tiny clusters for random weights."""
    return [sys.executable, "-m", "ssen_ros.ros.entry", "--ros-args",
            "--params-file", str(REPO / "config" / "ssen.yaml"), "-r", f"__node:={NODE_NAME}",
            "-r", f"map_cloud:={TOPIC}", "-p", f"segmenter.weights:={weights}",
            "-p", "segmenter.device:=cpu", "-p", f"segmenter.max_points:={MAX_POINTS}",
            *(["-p", "segmenter.background_classes:=[]", "-p", "segmenter.cluster.min_cluster_size:=50"]
              if random_weights else [])]


def run_fuzz(count: int, good_every: int, seed: int, weights: str, random_weights: bool,
             timeout: float = 60.0, startup_timeout: float = 120.0) -> FuzzResult:
    """Send ``count`` messages to a fresh node (see the module docstring) and report."""
    env = ros_env()
    os.environ.update(env)  # this process's participant reads them too
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from ssen_ros.msg import InstanceArray
    from ssen_ros.ros.convert import cloud_message, qos_profile

    rng = np.random.default_rng(seed)
    room = room_map(3000)
    node = NodeLog(subprocess.Popen(node_command(weights, random_weights), env=env, cwd=REPO,
                                    text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    side = rclpy.create_node("ssen_fuzzer", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(side)
    publisher = side.create_publisher(PointCloud2, TOPIC, qos_profile("reliable", "volatile", 10))
    received: dict[int, float] = {}
    side.create_subscription(InstanceArray, f"/{NODE_NAME}/instances",
                             lambda m: received.setdefault(m.header.stamp.sec, time.monotonic()),
                             qos_profile("reliable", "volatile", 50))
    result = FuzzResult()

    def spin_until(cond: Callable[[], bool], limit: float) -> bool:
        deadline = time.monotonic() + limit
        while not cond():
            if time.monotonic() > deadline or node.proc.poll() is not None:
                return False
            executor.spin_once(timeout_sec=0.01)
        return True

    t_start = time.monotonic()
    try:
        if not spin_until(lambda: publisher.get_subscription_count() > 0, startup_timeout):
            raise RuntimeError("the node did not subscribe:\n" + "\n".join(node.since(0)))
        spin_until(lambda: False, 1.0)  # let discovery settle on both sides
        for k in range(count):
            good = (k + 1) % good_every == 0
            cat = Category("good map", _room_part, "map") if good else CATEGORIES[k % len(CATEGORIES)]
            header = Header(frame_id=cat.frame_id)
            header.stamp.sec, header.stamp.nanosec = 1 + k, 7
            msg = cloud_message(room if good else cat.cloud(rng, room), header)
            if cat.edit is not None:
                cat.edit(msg, rng)
            stamp = f"stamp {1 + k}.000000007"
            start = len(node.since(0))
            t0 = time.monotonic()
            publisher.publish(msg)
            result.sent[cat.name] = result.sent.get(cat.name, 0) + 1
            named = lambda: [ln for ln in node.since(start) if stamp in ln]  # noqa: E731
            ok = spin_until(lambda: named() and (not good or 1 + k in received), timeout)
            if good and 1 + k in received:
                result.good_latency_s.append(received[1 + k] - t0)
                result.good_segmented += bool(re.search(r"points -> [1-9]\d* instances", named()[0]))
            if node.proc.poll() is not None:
                result.died = True
                result.problems.append(f"message {k} ({cat.name}): the node died, exit {node.proc.returncode}")
                break
            lines = node.since(start)
            result.lines.append(len(lines))
            want = "]: rejected map " if cat.expect == "rejected" else "]: map "
            if not ok or len(lines) != 1 or want not in lines[0] or len(lines[0]) > MAX_LINE_CHARS:
                result.problems.append(f"message {k} ({cat.name}): {len(lines)} line(s): "
                                       + " | ".join(ln[:300] for ln in lines))
            if k % 100 == 0:
                result.rss_mb.append(node.rss_mb())
        result.rss_mb.append(node.rss_mb())
    finally:
        result.seconds = time.monotonic() - t_start
        executor.shutdown()
        side.destroy_node()
        rclpy.try_shutdown(context=context)
        if node.proc.poll() is None:
            node.proc.terminate()
            node.proc.wait(timeout=30)
    return result


def report(result: FuzzResult, count: int) -> str:
    """The markdown body of benchmarks/fuzz.md."""
    sent = sum(result.sent.values())
    lat = sorted(result.good_latency_s)
    rows = "\n".join(f"| {name} | {n} |" for name, n in result.sent.items())
    lines = result.lines or [0]
    latency = (f"median {statistics.median(lat):.3f} s, max {lat[-1]:.3f} s over {len(lat)} good maps"
               if lat else "no good map was answered")
    rss = (f"{result.rss_mb[0]:.0f} MiB after the first message, {result.rss_mb[-1]:.0f} MiB at the "
           f"end, {max(result.rss_mb):.0f} MiB at most ({len(result.rss_mb)} samples)") if result.rss_mb else "-"
    problems = "\n".join(f"- {p}" for p in result.problems[:20]) or "- none"
    return f"""Messages sent: {sent} of {count} requested, in {result.seconds:.0f} s.

| result | value |
|---|---|
| node deaths | {int(result.died)} |
| messages that broke a rule (not exactly one line of the expected kind, or a line over {MAX_LINE_CHARS} chars, or no line in time) | {len(result.problems)} |
| log lines per message | mean {statistics.mean(lines):.3f}, min {min(lines)}, max {max(lines)} |
| good maps segmented (at least one instance) | {result.good_segmented} of {result.sent.get('good map', 0)} |
| latency of the good maps (publish -> ~/instances) | {latency} |
| node RSS over the run | {rss} |

| category | messages |
|---|---|
{rows}

Problems (first 20):

{problems}
"""


def main(argv: "list[str] | None" = None) -> int:
    from benchmarks import write_results

    parser = argparse.ArgumentParser(prog="python -m benchmarks fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--good-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a message's line")
    parser.add_argument("--weights", default="default")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        weights, random_weights, described = bench_weights(args.weights, Path(folder))
        result = run_fuzz(args.count, args.good_every, args.seed, weights, random_weights, args.timeout)
    body = f"Weights: {described}.\n\n" + report(result, args.count)
    path = write_results("fuzz", "Hostile maps against a real node (issue 16)", body)
    print(path.read_text())
    return 1 if result.died or result.problems else 0
