"""Scores of a weights file on the held-out synthetic test rooms: mIoU and ScanNet AP/AP50/AP25.

``ssen bench weights [--weights PATH] [--data data/rooms/test] [--limit N] [--tta N]`` runs the
whole pipeline (``ssen_ros.scoring``) on each scene; writes ``benchmarks/weights.md``.
"""
from __future__ import annotations

import argparse
import json

from ssen_ros import checkpoint
from ssen_ros.bench import write_results
from ssen_ros.config import ClusterConfig, SegmenterConfig
from ssen_ros.data.dataset import find_scenes
from ssen_ros.scoring import score_scenes
from ssen_ros.segmenter import Segmenter


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ssen bench weights")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--data", default="data/rooms/test")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--tta", type=int, default=1)
    args = parser.parse_args(argv)
    scenes = find_scenes(args.data)[: args.limit]
    rows, tables = [], []
    for method in ("fast", "exact"):
        segmenter = Segmenter(SegmenterConfig(weights=args.weights, tta_rotations=args.tta,
                                              cluster=ClusterConfig(method=method)))
        scores = score_scenes(segmenter, scenes)
        s = scores.summary()
        rows.append(f"| {method} | {s['mIoU']:.3f} | {s['AP']:.3f} | {s['AP50']:.3f} | {s['AP25']:.3f} "
                    f"| {s['seconds_per_scene']:.2f} |")
        tables.append(f"Per class, clustering `{method}`:\n\n```\n{scores.instance.table()}\n```")
    meta = segmenter.meta
    spec = segmenter.spec
    body = (f"Weights: `{checkpoint.resolve(args.weights).name}` ({spec.arch}, {spec.voxel_size} m voxels, "
            f"{spec.in_channels} input channels), trained {meta.get('step', '?')} steps with\n\n"
            f"```json\n{json.dumps(meta.get('train_config', {}), indent=1)}\n```\n\n"
            f"Test scenes: {len(scenes)} held-out synthetic rooms from `{args.data}` (seeds 20000..), "
            f"TTA rotations {args.tta}, whole pipeline on the CPU.\n\n"
            "| clustering | mIoU | AP | AP50 | AP25 | s / scene |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\n" + "\n\n".join(tables))
    print(body)
    write_results("weights", "Shipped weights on the held-out test rooms", body)
    return 0
