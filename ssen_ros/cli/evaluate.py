"""``ssen evaluate PRED_DIR GT_DIR``: the ScanNet instance benchmark on a submission folder.

PRED_DIR is in the official submission format (``SCENE.txt`` + mask files). GT_DIR holds,
per scene, either the official ground-truth file ``SCENE.txt`` (``nyu40*1000+instance`` per
vertex) or a ScanNet scene folder ``SCENE/`` (as ``ssen generate`` writes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", type=Path, help="submission folder: SCENE.txt + mask files")
    parser.add_argument("gt_dir", type=Path, help="ground truth: SCENE.txt files or SCENE/ folders")
    parser.add_argument("--output", type=Path, default=None,
                        help="result csv (default PRED_DIR/semantic_instance_evaluation.txt)")


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
    from ssen_ros.evaluate import evaluate_folders

    scenes = sorted(p.stem for p in args.pred_dir.glob("*.txt")
                    if p.name != "semantic_instance_evaluation.txt")
    try:
        gt = {name: _ground_truth(args.gt_dir, name) for name in scenes}
        result = evaluate_folders(args.pred_dir, gt)
    except ValueError as e:
        print(f"ssen evaluate: {e}", file=sys.stderr)
        return 2
    print(f"{len(scenes)} scenes")
    print(result.table())
    output = args.output or args.pred_dir / "semantic_instance_evaluation.txt"
    output.write_text(result.csv())
    print(f"wrote {output}")
    return 0
