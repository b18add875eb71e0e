"""The node's own cost next to the segmenter's, and end-to-end latency over real DDS (issue 7).

``python -m benchmarks node [--points 200000] [--latency-points 200000 1000000] [--repeat 3]
[--weights PATH]`` writes ``benchmarks/node.md``:

- **Overhead**: ``ssen_ros.ros.processing.MapProcessor`` (the code the node runs per map) on a
  serialised map, in this process and, as in the node, on a worker thread (on this loaded
  2-core machine torch's networks ran about 4x slower on the main thread with 2 intra-op
  threads than on another thread): deserialise + decode + stable ids + labelled-cloud encode +
  markers, plus publishing the three outputs through the node's own publishers
  (``ssen_ros.ros.node.OutputPublishers``, no subscriber: rclpy's conversion and serialisation
  and the DDS write), as a fraction of the segmenter's time in the same calls. Goal: <= 10 %
  for 200k points.
- **Latency**: a real ``ssen_node`` process and this process as publisher (Fast DDS profile
  config/fastdds.xml, localhost only, a domain of its own): time from ``publish`` of the map
  to receiving its ``~/instances``, next to the node's own processing time from that message.

The map is a synthetic test room (``ssen_ros.synthetic.generate``, seed 20000) resampled to the
requested size: a random subset, or jittered copies (3 mm) when it needs more points. Weights:
the shipped demo weights when they exist, else random weights of the demo architecture
(Res16UNet14S at 5 cm, config/train_demo.yaml): the same work per voxel, different clusters.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ssen_ros import checkpoint
from benchmarks import REPO, peak_rss_mb, write_results
from ssen_ros.io import Cloud

PARAMS_FILE = REPO / "config" / "ssen.yaml"
OVERHEAD_STAGES = ("deserialize", "decode", "ids", "encode", "markers", "publish outputs")


def room_map(points: int, seed: int = 20000) -> Cloud:
    """A synthetic test room with exactly ``points`` points (see the module docstring)."""
    from ssen_ros.synthetic.generate import generate_scene

    scan = generate_scene(seed).scan
    rng = np.random.default_rng(0)
    index = rng.choice(len(scan), points, replace=points > len(scan))
    xyz = scan.points[index].astype(np.float32)
    if points > len(scan):
        xyz += rng.normal(0, 0.003, xyz.shape).astype(np.float32)
    return Cloud(xyz, scan.colors[index])


def bench_weights(arg: str, folder: Path) -> tuple[str, bool, str]:
    """(weights path, whether they are random, description for the results)."""
    if arg != "default" or checkpoint.DEFAULT_WEIGHTS.is_file():
        return arg, False, f"`{arg}`"
    import torch

    torch.manual_seed(0)
    spec = checkpoint.ModelSpec(arch="Res16UNet14S", voxel_size=0.05, conv1_kernel=3)
    path = folder / "random_demo_arch.pt"
    checkpoint.save(path, spec, *checkpoint.build_pair(spec, backend="torch"))
    return str(path), True, (
        "random weights (seed 0) of the demo architecture (Res16UNet14S, 5 cm voxels), as the "
        "shipped weights do not exist yet; with them every class is foreground "
        "(`segmenter.background_classes: []`), so the embedding network and the clustering see "
        "every voxel instead of whatever few voxels random semantics leave")


def _node_config(weights: str, random_weights: bool):
    from ssen_ros.config import NodeConfig, from_dict
    import yaml

    tree = yaml.safe_load(PARAMS_FILE.read_text())["ssen_node"]["ros__parameters"]
    tree["segmenter"].update(weights=weights, device="cpu")
    if random_weights:
        tree["segmenter"]["background_classes"] = []
    return from_dict(NodeConfig, tree)


class BenchPublishers:
    """The node's output publishers (``OutputPublishers``) on a node of this process, in a
    domain of its own (``ros_env``); ``publish(out)`` publishes a ``MapProcessor`` output as the
    node does and records the seconds as the stage 'publish outputs'. Use it as a context
    manager (it shuts its context down)."""

    def __enter__(self) -> "BenchPublishers":
        os.environ.update(ros_env())
        import rclpy

        from ssen_ros.ros.node import OutputPublishers

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
        self.publishers = OutputPublishers(rclpy.create_node("ssen_bench_outputs", context=self.context))
        return self

    def __exit__(self, *exc) -> None:
        import rclpy

        rclpy.try_shutdown(context=self.context)

    def publish(self, out) -> None:
        t = time.perf_counter()
        self.publishers.publish(out, time.monotonic())
        out.timings["publish outputs"] = time.perf_counter() - t


def overhead(weights: str, random_weights: bool, cloud: Cloud, repeat: int) -> tuple[str, dict]:
    """Median seconds per stage of the node's per-map code; the markdown table and the medians."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from ssen_ros.ros.convert import cloud_message
    from ssen_ros.ros.processing import MapProcessor

    processor = MapProcessor(_node_config(weights, random_weights))
    raw = serialize_message(cloud_message(cloud, Header(frame_id="map")))
    runs: list[dict] = []
    publishers = BenchPublishers()

    def work() -> None:
        for k in range(repeat + 1):  # the first run warms up
            out = processor(raw)
            publishers.publish(out)
            out.timings["segmenter"] = out.segmenter_seconds
            if k:
                runs.append(out.timings)
        runs.append({"instances": len(out.instances)})

    with publishers:
        worker = threading.Thread(target=work)  # as in the node, whose worker thread segments
        worker.start()
        worker.join()
    num_instances = runs.pop()["instances"]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    node_s = sum(med[k] for k in OVERHEAD_STAGES)
    rows = [f"| {k} | {med[k] * 1e3:.1f} | {med[k] / med['segmenter'] * 100:.1f} % |"
            for k in OVERHEAD_STAGES]
    table = "\n".join([
        "| node stage | ms (median) | of segmenter time |", "|---|---|---|", *rows,
        f"| **node overhead, total** | **{node_s * 1e3:.1f}** | **{node_s / med['segmenter'] * 100:.1f} %** |",
        f"| segmenter (voxelise, networks, clustering, instances) | {med['segmenter'] * 1e3:.1f} | 100 % |",
    ])
    seg_stages = ", ".join(f"{k} {med[k] * 1e3:.0f} ms" for k in med
                           if k not in OVERHEAD_STAGES and k != "segmenter")
    text = (f"{table}\n\nSegmenter stages: {seg_stages}. Instances found: {num_instances}; "
            f"median of {repeat} runs after one warm-up run.")
    return text, med


def ros_env() -> dict[str, str]:
    """Environment for a benchmark's ROS processes: a domain of its own, localhost only, our Fast DDS profile."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(1 + os.getpid() % 101), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds.xml"),
               RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
    return env


def latency(weights: str, random_weights: bool, sizes: list[int], repeat: int,
            timeout: float = 600.0) -> str:
    """Publish -> ``~/instances`` received, through a real node process; a markdown table."""
    env = ros_env()
    os.environ.update(env)  # this process's participant reads them too
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from ssen_ros.msg import InstanceArray
    from ssen_ros.ros.convert import cloud_message, qos_profile

    node_proc = subprocess.Popen(
        [sys.executable, "-m", "ssen_ros.ros.entry", "--ros-args", "--params-file", str(PARAMS_FILE),
         "-p", f"segmenter.weights:={weights}", "-p", "segmenter.device:=cpu",
         *(["-p", "segmenter.background_classes:=[]"] if random_weights else [])],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    rows = []
    try:
        node = rclpy.create_node("ssen_bench", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        got: dict[int, tuple[float, float]] = {}
        node.create_subscription(
            InstanceArray, "/ssen_node/instances",
            lambda m: got.__setitem__(m.header.stamp.sec, (time.perf_counter(), m.processing_time)),
            qos_profile("reliable", "volatile", 10))
        pub = node.create_publisher(PointCloud2, "/map_cloud", qos_profile())

        def spin_until(cond, what):
            deadline = time.monotonic() + timeout
            while not cond():
                if time.monotonic() > deadline or node_proc.poll() is not None:
                    raise RuntimeError(f"bench node: no {what} (node exit code {node_proc.poll()})")
                executor.spin_once(timeout_sec=0.01)

        spin_until(lambda: pub.get_subscription_count() > 0, "subscription to /map_cloud")
        stamp = 0
        for n in sizes:
            msg = cloud_message(room_map(n), Header(frame_id="map"))
            lat, proc = [], []
            for k in range(repeat + 1):  # the first run warms up
                stamp += 1
                msg.header.stamp.sec = stamp
                t0 = time.perf_counter()
                pub.publish(msg)
                spin_until(lambda: stamp in got, f"instances for the {n}-point map")
                if k:
                    lat.append(got[stamp][0] - t0)
                    proc.append(got[stamp][1])
            lat_s, proc_s = statistics.median(lat), statistics.median(proc)
            rows.append(f"| {n:,} | {len(msg.data) / 1e6:.1f} | {lat_s * 1e3:.0f} | {proc_s * 1e3:.0f} "
                        f"| {(lat_s - proc_s) * 1e3:.0f} |")
    finally:
        rclpy.try_shutdown(context=context)
        node_proc.send_signal(signal.SIGINT)
        node_proc.wait(timeout=30)
    return "\n".join([
        "| map points | message MB | publish -> ~/instances received, ms | node processing "
        "(InstanceArray.processing_time), ms | the rest: DDS transport + rclpy take, ms |",
        "|---|---|---|---|---|", *rows])


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks node", description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000, help="map size for the overhead")
    parser.add_argument("--latency-points", type=int, nargs="*", default=[200_000, 1_000_000],
                        help="map sizes for the latency (none: skip it)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--weights", default="default")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        weights, random_weights, weights_text = bench_weights(args.weights, Path(tmp))
        table, _ = overhead(weights, random_weights, room_map(args.points), args.repeat)
        body = [f"Weights: {weights_text}. Device: CPU. Map: synthetic test room (seed 20000) "
                f"resampled to the stated size; node parameters from config/ssen.yaml.",
                f"\n## Node overhead, {args.points:,}-point map (goal <= 10 % of the segmenter)\n",
                table]
        if args.latency_points:
            body += ["\n## End-to-end latency over Fast DDS (shared memory, config/fastdds.xml)\n",
                     latency(weights, random_weights, args.latency_points, args.repeat),
                     f"\nMedian of {args.repeat} maps per size after one warm-up map; each map is "
                     "published after the previous one's instances arrived."]
    body.append(f"\nPeak RSS of the benchmark process: {peak_rss_mb():.0f} MiB.")
    path = write_results("node", "ssen_node: overhead and end-to-end latency", "\n".join(body))
    print(path.read_text())
    return 0
