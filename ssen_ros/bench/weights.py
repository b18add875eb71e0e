"""Scores of a weights file on the held-out synthetic test rooms: mIoU and ScanNet AP/AP50/AP25.

``ssen bench weights [--weights PATH] [--data data/rooms/test] [--limit N] [--tta N]`` runs the
whole pipeline (``ssen_ros.scoring``) on each scene with the default settings, with 'exact'
clustering, and with each of the instance-stage choices turned off in turn (the chained-cluster
split, the size factor of the score), so every choice's share shows in one run. Writes
``benchmarks/weights.md``, or ``benchmarks/weights_NAME.md`` for another folder NAME (the
validation rooms the choices were made on: ``--data data/rooms/val --limit 40``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ssen_ros import checkpoint
from ssen_ros.bench import write_results
from ssen_ros.config import ClusterConfig, SegmenterConfig
from ssen_ros.data.dataset import find_scenes
from ssen_ros.scoring import score_scenes, table_header
from ssen_ros.segmenter import Segmenter


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ssen bench weights")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--data", default="data/rooms/test")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--tta", type=int, default=1)
    args = parser.parse_args(argv)
    scenes = find_scenes(args.data)[: args.limit]
    base = SegmenterConfig(weights=args.weights, tta_rotations=args.tta)
    runs = [  # (row name, configuration, with a per-class table)
        ("fast (defaults)", base, True),
        ("exact", replace(base, cluster=ClusterConfig(method="exact")), True),
        ("fast, no chained-cluster split (split_distance 0)",
         replace(base, cluster=ClusterConfig(split_distance=0.0)), False),
        ("fast, score without size factor (score_half_area 0)", replace(base, score_half_area=0.0), False),
    ]
    rows, tables = [], []
    for name, config, per_class in runs:
        segmenter = Segmenter(config)
        scores = score_scenes(segmenter, scenes)
        rows.append(scores.row(name))
        if per_class:
            tables.append(f"Per class, `{name}`:\n\n```\n{scores.instance.table()}\n```")
    meta = segmenter.meta
    spec = segmenter.spec
    body = (f"Weights: `{checkpoint.resolve(args.weights).name}` ({spec.arch}, {spec.voxel_size} m voxels, "
            f"{spec.in_channels} input channels), trained {meta.get('step', '?')} steps with\n\n"
            f"```json\n{json.dumps(meta.get('train_config', {}), indent=1)}\n```\n\n"
            f"Scenes: the first {len(scenes)} synthetic rooms of `{args.data}`, "
            f"TTA rotations {args.tta}, whole pipeline on the CPU.\n\n"
            + table_header("configuration") + "\n"
            + "\n".join(rows) + "\n\n" + "\n\n".join(tables))
    print(body)
    folder = Path(args.data).name
    if folder == "test":
        write_results("weights", "Shipped weights on the held-out test rooms", body)
    else:
        write_results("weights", f"Shipped weights on the rooms of {args.data}", body, suffix=f"_{folder}")
    return 0
