"""Scores of a weights file on real labelled scans: mIoU, ScanNet AP/AP50/AP25, per class, s/scene.

``python -m benchmarks real --data DIR [--weights PATH] [--limit N]`` runs the whole pipeline
(``ssen_ros.scoring``) on every scene under DIR (ScanNet scene folders, or VoteNet's
``*_vert.npy`` layout), once with the scans' colours and once without (as a LiDAR map has
none), and writes ``benchmarks/real.md``. The scans themselves are never written anywhere:
ScanNet's terms allow no redistribution.
"""
from __future__ import annotations

import argparse

from benchmarks import weights_line, write_results
from ssen_ros.config import SegmenterConfig
from ssen_ros.data.dataset import find_scenes
from ssen_ros.data.perturb import Perturbation
from ssen_ros.scoring import score_scenes, table_header
from ssen_ros.segmenter import Segmenter


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks real")
    parser.add_argument("--data", required=True, help="folder of real labelled scenes")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--limit", type=int, default=0, help="first N scenes only (0: all)")
    parser.add_argument("--suffix", default="", help="write benchmarks/real_SUFFIX.md (default real.md)")
    args = parser.parse_args(argv)
    scenes = find_scenes(args.data)[: args.limit or None]
    segmenter = Segmenter(SegmenterConfig(weights=args.weights))
    rows, tables = [], []
    for name, perturb in (("with colour", None), ("without colour", Perturbation(colors="none"))):
        scores = score_scenes(segmenter, scenes, perturb)
        rows.append(scores.row(name))
        tables.append(f"Per class, {name}:\n\n```\n{scores.instance.table()}\n```\n\n"
                      f"Semantic IoU per class, {name}: {scores.class_iou_line()}")
        print(rows[-1], flush=True)
    body = (weights_line(args.weights, segmenter) + "\n\n"
            f"Scenes: {len(scenes)} real scans under `{args.data}` ({', '.join(p.name.split('_vert')[0] for p in scenes)}), "
            "whole pipeline with the default settings on the CPU.\n\n"
            + table_header("input") + "\n"
            + "\n".join(rows) + "\n\n" + "\n\n".join(tables))
    print(body)
    write_results("real", "Weights on real labelled scans", body, suffix=f"_{args.suffix}" if args.suffix else "")
    return 0
