"""``ssen evaluate``: the ScanNet instance benchmark, on a submission or on a weights file.

``ssen evaluate PRED_DIR GT_DIR`` scores a submission: PRED_DIR is in the official format
(``SCENE.txt`` + mask files); GT_DIR holds, per scene, either the official ground-truth file
``SCENE.txt`` (``nyu40*1000+instance`` per vertex) or a ScanNet scene folder ``SCENE/`` (as
``ssen generate`` writes).

``ssen evaluate --data DIR [--weights PATH] [--limit N] [--tta N]`` runs the whole pipeline
(``ssen_ros.scoring``) on the labelled scenes under DIR with the default settings, with 'exact'
clustering, and with each instance-stage choice turned off in turn (the chained-cluster split,
the size factor of the score), so every choice's share shows in one run. It writes
``benchmarks/weights.md`` for a folder named ``test``, else ``benchmarks/weights_NAME.md``
(``--output`` elsewhere).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ssen_ros.cli import at_least, check_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", type=Path, nargs="?", help="submission folder: SCENE.txt + mask files")
    parser.add_argument("gt_dir", type=Path, nargs="?", help="ground truth: SCENE.txt files or SCENE/ folders")
    parser.add_argument("--data", type=Path, help="score a weights file on the labelled scenes in this folder")
    parser.add_argument("--weights", default="default", help="with --data: weights file (default: shipped)")
    parser.add_argument("--limit", type=at_least(1, int), default=20, help="with --data: the first N scenes")
    parser.add_argument("--tta", type=at_least(1, int), default=1,
                        help="with --data: rotations averaged (paper Table II)")
    parser.add_argument("--output", type=Path, default=None,
                        help="result file (default PRED_DIR/semantic_instance_evaluation.txt; with "
                             "--data benchmarks/weights[_NAME].md)")


def _ground_truth(gt_dir: Path, scene: str):
    from ssen_ros.evaluate import EvaluationError, gt_ids, read_gt_file
    from ssen_ros.io.scannet import read_scannet_scene

    if (gt_dir / f"{scene}.txt").is_file():
        return read_gt_file(gt_dir / f"{scene}.txt")
    if (gt_dir / scene).is_dir():
        s = read_scannet_scene(gt_dir / scene)
        if s.semantic is None:
            raise EvaluationError(f"{gt_dir / scene}: no annotation files")
        return gt_ids(s.semantic, s.instance)
    raise EvaluationError(f"no ground truth for scene {scene}: neither {gt_dir / (scene + '.txt')} "
                          f"nor {gt_dir / scene}/")


def run(args: argparse.Namespace) -> int:
    if args.data is not None:
        if args.pred_dir is not None:
            print("ssen evaluate: give either PRED_DIR GT_DIR or --data, not both", file=sys.stderr)
            return 2
        return _evaluate_weights(args)
    if args.gt_dir is None:
        print("ssen evaluate: give PRED_DIR GT_DIR, or --data DIR", file=sys.stderr)
        return 2
    return _evaluate_submission(args)


def _evaluate_submission(args: argparse.Namespace) -> int:
    from ssen_ros.evaluate import evaluate_folders

    scenes = sorted(p.stem for p in args.pred_dir.glob("*.txt")
                    if p.name != "semantic_instance_evaluation.txt")
    output = args.output or args.pred_dir / "semantic_instance_evaluation.txt"
    check_output(output, "--output", [p for folder in (args.pred_dir, args.gt_dir) for p in folder.rglob("*")
                                      if p.name != "semantic_instance_evaluation.txt"])
    try:
        gt = {name: _ground_truth(args.gt_dir, name) for name in scenes}
        result = evaluate_folders(args.pred_dir, gt)
    except ValueError as e:
        print(f"ssen evaluate: {e}", file=sys.stderr)
        return 2
    print(f"{len(scenes)} scenes")
    print(result.table())
    output.write_text(result.csv())
    print(f"wrote {output}")
    return 0


def _evaluate_weights(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from ssen_ros import checkpoint
    from ssen_ros.config import ClusterConfig, SegmenterConfig
    from ssen_ros.data.dataset import find_scenes
    from ssen_ros.report import write_report
    from ssen_ros.scoring import score_scenes, table_header
    from ssen_ros.segmenter import Segmenter

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
    folder = args.data.name
    if folder == "test":
        title, name = "Shipped weights on the held-out test rooms", "weights"
    else:
        title, name = f"Shipped weights on the rooms of {args.data}", f"weights_{folder}"
    output = args.output or Path("benchmarks") / f"{name}.md"
    command = shlex.join(["ssen", "evaluate", "--data", str(args.data), "--weights", str(args.weights),
                          "--limit", str(args.limit), "--tta", str(args.tta)])
    print(f"wrote {write_report(output, title, command, body)}")
    return 0
