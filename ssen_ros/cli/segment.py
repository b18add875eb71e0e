"""``ssen segment INPUT -o OUT``: segment one cloud into instances offline (paper §III pipeline).

INPUT is a ``.ply`` or ``.pcd`` file, a ScanNet scene folder, or a rosbag2 bag (its folder,
``.db3`` or ``.mcap`` file) with ``--topic`` (the last message, or ``--index``). The networks
expect z up; ``--up optical`` turns a camera's optical frame (y down) upright first. Writes

- ``OUT/labeled.ply``: the input points coloured by instance, with int fields ``label``
  (train id, -1 unlabelled) and ``instance`` (-1 background/noise);
- ``OUT/instances.json``: the instance records, per-stage timings, the input and the config;
- ``OUT/segmentation.png``: top-down and oblique views coloured by instance, "class score" at
  each centroid;

and prints a table of the instances. Bad input exits with status 2 and one line saying why.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ssen_ros.cli import OutputPathError, at_least, check_output
from ssen_ros.config import Backend, ClusterMethod, Device, choices

BAG_SUFFIXES = (".db3", ".mcap")
UP_AXES = {
    # the input's convention -> rotation (rows) to the z-up frame the networks were trained in
    "z-up": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),      # ROS (REP-103), ScanNet
    "y-up": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),     # OBJ, glTF, Sweet Home 3D
    "optical": ((1, 0, 0), (0, 0, 1), (0, -1, 0)),  # camera optical frame: x right, y down, z ahead
}


class InputError(ValueError):
    """The input or an option is unusable; the message says which and why."""


OUTPUT_NAMES = ("labeled.ply", "instances.json", "segmentation.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path,
                        help="a .ply or .pcd file, a ScanNet scene folder, or a rosbag2 bag "
                             "(folder, .db3 or .mcap) with --topic")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--topic", help="PointCloud2 topic to read from a bag")
    parser.add_argument("--index", type=int, default=-1,
                        help="which message of the topic (0 first, -1 last; default -1)")
    parser.add_argument("--config", type=Path, help="segmenter YAML (SegmenterConfig keys)")
    parser.add_argument("--weights", help="weights file ('default': the shipped demo weights)")
    parser.add_argument("--device", choices=choices(Device))
    parser.add_argument("--backend", choices=choices(Backend))
    parser.add_argument("--clustering", choices=choices(ClusterMethod))
    parser.add_argument("--tta", type=at_least(1, int), metavar="N", help="rotations of test-time augmentation")
    parser.add_argument("--up", choices=list(UP_AXES), default="z-up",
                        help="the input's up convention; 'optical' for a camera's optical frame "
                             "(outputs are written in the rotated, z-up frame)")
    parser.add_argument("--tile-size", type=at_least(0.0), metavar="M",
                        help="tile edge in metres for large maps (0: never tile)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no table")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ssen_ros.checkpoint import WeightsError
    from ssen_ros.config import ConfigError
    from ssen_ros.features import NO_COLOUR
    from ssen_ros.io import CloudFormatError
    from ssen_ros.segmenter import Segmenter, SegmenterError

    try:
        check_output(args.out, "-o", folder=True)
        for name in OUTPUT_NAMES:
            check_output(args.out / name, "-o", [args.input])
        config = _config(args)
        t0 = time.perf_counter()
        cloud, info = read_input(args.input, args.topic, args.index)
        info["read_seconds"] = time.perf_counter() - t0
        points = cloud.points @ np.asarray(UP_AXES[args.up], dtype=cloud.points.dtype).T
        info["up"] = args.up
        segmenter = Segmenter(config)
        if cloud.colors is None:
            print(f"ssen segment: {args.input}: {NO_COLOUR}", file=sys.stderr)
        result = segmenter(points, cloud.colors, progress=not args.quiet)
    except (InputError, OutputPathError, CloudFormatError, ConfigError, WeightsError, SegmenterError) as err:
        print(f"ssen segment: {err}", file=sys.stderr)
        return 2
    paths = write_outputs(args.out, points, result, info, config)
    if not args.quiet:
        print(summary_table(result))
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _config(args: argparse.Namespace):
    from ssen_ros.config import SegmenterConfig, load_yaml

    config = load_yaml(SegmenterConfig, args.config) if args.config else SegmenterConfig()
    overrides = {k: v for k, v in (("weights", args.weights), ("device", args.device),
                                   ("backend", args.backend), ("tta_rotations", args.tta),
                                   ("tile_size", args.tile_size)) if v is not None}
    config = replace(config, **overrides)
    if args.clustering:
        config = replace(config, cluster=replace(config.cluster, method=args.clustering))
    return config


def is_bag(path: Path) -> bool:
    return path.suffix.lower() in BAG_SUFFIXES or (path.is_dir() and (path / "metadata.yaml").is_file())


def read_input(path: Path, topic: "str | None", index: int = -1):
    """(Cloud, info dict) from a file, ScanNet folder or bag message; errors name the input."""
    from ssen_ros.io import read_cloud

    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if not (path.is_file() or path.is_dir()):  # a FIFO or device would block the read
        raise InputError(f"{path}: not a regular file or folder")
    info: dict[str, Any] = {"path": str(path)}
    if is_bag(path):
        cloud = _read_bag_message(path, topic, index)
        info.update(format="rosbag2", topic=topic, index=index)
    elif topic is not None:
        raise InputError(f"{path}: --topic is for rosbag2 bags, and this is not one "
                         f"(no metadata.yaml, not {' or '.join(BAG_SUFFIXES)})")
    else:
        cloud = read_cloud(path)
        info["format"] = "scannet" if path.is_dir() else path.suffix.lower().lstrip(".")
    if len(cloud) == 0:
        raise InputError(f"{path}: no points with finite x, y and z"
                         + (f" ({cloud.dropped_nonfinite} dropped)" if cloud.dropped_nonfinite else ""))
    info.update(points=len(cloud), dropped_nonfinite=cloud.dropped_nonfinite,
                has_colors=cloud.colors is not None, frame_id=cloud.frame_id, stamp_ns=cloud.stamp_ns)
    return cloud, info


def _read_bag_message(path: Path, topic: "str | None", index: int):
    from ssen_ros.io.bag import POINTCLOUD2, bag_topics, read_bag_clouds

    if topic is None:
        clouds = sorted(t for t, kind in bag_topics(path).items() if kind == POINTCLOUD2)
        raise InputError(f"{path}: a bag needs --topic; its PointCloud2 topics: {clouds}")
    messages = read_bag_clouds(path, topic)
    count = 0
    if index >= 0:
        for count, cloud in enumerate(messages, 1):
            if count == index + 1:
                messages.close()
                return cloud
    else:
        window = collections.deque(messages, maxlen=-index)
        count = len(window)
        if count == -index:
            return window[0]
    raise InputError(f"{path}: topic {topic!r} has {count} message(s); --index {index} is out of range")


def write_outputs(out: Path, points, result, info: dict, config) -> list[Path]:
    """labeled.ply, instances.json and segmentation.png in ``out``."""
    import numpy as np

    from ssen_ros.config import to_dict
    from ssen_ros.io.cloud import Cloud
    from ssen_ros.io.ply import write_ply
    from ssen_ros.render import instance_colors

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    labeled = Cloud(np.asarray(points), instance_colors(result.instance),
                    {"label": result.semantic.astype(np.int32),
                     "instance": result.instance.astype(np.int32)})
    ply = write_ply(out / "labeled.ply", labeled)
    png = render_result(points, result, out / "segmentation.png", Path(info["path"]).name)
    info["write_seconds"] = time.perf_counter() - t0
    record = {"input": info, "timings": result.timings, "num_voxels": result.num_voxels,
              "num_foreground_voxels": result.num_foreground_voxels, "num_tiles": result.num_tiles,
              "config": to_dict(config), "instances": [r.to_dict() for r in result.instances]}
    js = out / "instances.json"
    js.write_text(json.dumps(record, indent=1))
    return [ply, js, png]


def render_result(points, result, path: Path, name: str) -> Path:
    """PNG coloured by instance, "class score" at centroids; the oblique view leaves out the
    walls on the camera's side of the cloud (a cut-away) so the objects behind them show."""
    import numpy as np

    from ssen_ros.classes import CLASS_NAMES
    from ssen_ros.render import render_instances, toward_camera

    points = np.asarray(points, dtype=np.float64)
    toward = toward_camera("oblique")[:2]
    near_side = (points[:, :2] - points[:, :2].mean(0)) @ toward > 0
    hidden = {"oblique": near_side & (result.semantic == CLASS_NAMES.index("wall"))}
    labels = [(r.centroid, f"{r.class_name} {r.score:.2f}") for r in result.instances]
    title = (f"{name}: {len(points):,} points, {len(result.instances)} instances, "
             f"{result.timings.get('total', 0.0):.1f} s")
    return render_instances(points, result.instance, path, labels_text=labels, title=title,
                            hidden=hidden)


def summary_table(result) -> str:
    """The instances as a text table, then the stage timings."""
    rows = [f"{'id':>4}  {'class':<15} {'score':>5} {'points':>8}  box l x w x h (m)"]
    for r in result.instances:
        l, w, h = r.obb_size
        rows.append(f"{r.id:>4}  {r.class_name:<15} {r.score:5.2f} {r.point_count:>8,}  "
                    f"{l:.2f} x {w:.2f} x {h:.2f}")
    if not result.instances:
        rows.append("   (no instances)")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items() if k != "total")
    tiles = f" in {result.num_tiles} tiles" if result.num_tiles > 1 else ""
    rows.append(f"{len(result.instances)} instances{tiles}, {result.timings.get('total', 0.0):.2f} s"
                + (f" ({stages} s)" if stages else ""))
    return "\n".join(rows)
