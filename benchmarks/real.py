"""Scores of a weights file on real labelled scans: mIoU, ScanNet AP/AP50/AP25, per class, s/scene.

``python -m benchmarks real --data DIR [--weights PATH] [--limit N]`` runs the whole pipeline
(``ssen_ros.scoring``) on every scene under DIR (ScanNet scene folders, or VoteNet's
``*_vert.npy`` layout), with the scans' colours and without (as a LiDAR map has none), and
writes ``benchmarks/real.md``. The scans themselves are never written anywhere: ScanNet's terms
allow no redistribution.

``--tta 1,4`` (the default) scores each input with the default settings and again with the
semantic network averaged over 4 turns about z (``segmenter.tta_rotations``, paper Table II).

Each input is scored ``--shifts`` times, the scans moved (``Perturbation.offset``) across one
cell of the networks' coarsest stride (``voxel.GRID_ALIGN`` voxels) in x, y and z by the R3
low-discrepancy sequence (M. Roberts, "The unreasonable effectiveness of quasirandom
sequences", 2018), the first move zero. Where the grids fall on a scan changes the result by more
than many settings do, and moves by fractions of a voxel alone leave the strided layers' cells
nearly as they were and understate that (docs/real_scans.md), so the rows give the mean over
the positions and the range. The per-class tables, and which classes each true class's points
were predicted as, are those of the unmoved scans.
"""
from __future__ import annotations

import argparse
import itertools
from dataclasses import replace

import numpy as np

from benchmarks import weights_line, write_results
from ssen_ros.config import SegmenterConfig
from ssen_ros.data.dataset import find_scenes
from ssen_ros.data.perturb import Perturbation
from ssen_ros.scoring import score_scenes, table_header
from ssen_ros.segmenter import Segmenter
from ssen_ros.voxel import GRID_ALIGN

R3 = 1.0 / 1.2207440846057596 ** np.arange(1, 4)
"""Steps of the R3 sequence: k * R3 mod 1 spreads evenly over a unit cube for any count."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks real")
    parser.add_argument("--data", required=True, help="folder of real labelled scenes")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--limit", type=int, default=0, help="first N scenes only (0: all)")
    parser.add_argument("--suffix", default="", help="write benchmarks/real_SUFFIX.md (default real.md)")
    parser.add_argument("--shifts", type=int, default=6, help="grid positions scored per input")
    parser.add_argument("--tta", default="1,4", help="segmenter.tta_rotations values, comma-separated; "
                        "per-class tables for the first")
    args = parser.parse_args(argv)
    scenes = find_scenes(args.data)[: args.limit or None]
    turns = [int(t) for t in args.tta.split(",")]
    segmenter = Segmenter(SegmenterConfig(weights=args.weights, tta_rotations=turns[0]))
    moves = (np.arange(args.shifts)[:, None] * R3 % 1.0) * GRID_ALIGN * segmenter.voxel_size
    rows, tables = [], []
    for tta, (name, colors) in itertools.product(turns, (("with colour", "keep"), ("without colour", "none"))):
        segmenter.reconfigure(replace(segmenter.config, tta_rotations=tta))
        runs = [score_scenes(segmenter, scenes, Perturbation(colors=colors, offset=tuple(move)))
                for move in moves]
        if tta != 1:
            name = f"{name}, `tta_rotations` {tta}"
        summaries = [r.summary() for r in runs]
        mean = {key: float(np.mean([m[key] for m in summaries])) for key in summaries[0]}
        spread = [f"{min(m[key] for m in summaries):.3f}–{max(m[key] for m in summaries):.3f}"
                  for key in ("mIoU", "AP50")]
        rows.append(f"| {name} | {mean['mIoU']:.3f} | {mean['AP']:.3f} | {mean['AP50']:.3f} | "
                    f"{mean['AP25']:.3f} | {mean['seconds_per_scene']:.2f} | {spread[0]} | {spread[1]} | "
                    + " / ".join(f"{m['mIoU']:.3f}, {m['AP50']:.3f}" for m in summaries) + " |")
        print(rows[-1], flush=True)
        if tta == turns[0]:
            tables.append(f"Per class, {name} (scans not moved):\n\n```\n{runs[0].instance.table()}\n```\n\n"
                          f"Semantic IoU per class, {name} (scans not moved): {runs[0].class_iou_line()}\n\n"
                          f"Where each true class's labelled points went, {name} (scans not moved):\n\n"
                          f"{runs[0].confusion_table()}")
    body = (weights_line(args.weights, segmenter) + "\n\n"
            f"Scenes: {len(scenes)} real scans under `{args.data}` ({', '.join(p.name.split('_vert')[0] for p in scenes)}), "
            f"whole pipeline with the default settings on the CPU (and `tta_rotations` as the rows say); each input at {args.shifts} grid positions "
            f"(the scans moved across a {GRID_ALIGN}-voxel cell in x, y and z, the first not moved): the mean, the range "
            "of mIoU and AP50, and each position's mIoU, AP50.\n\n"
            + table_header("input", ["mIoU range", "AP50 range", "per position: mIoU, AP50"]) + "\n"
            + "\n".join(rows) + "\n\n" + "\n\n".join(tables))
    print(body)
    write_results("real", "Weights on real labelled scans", body, suffix=f"_{args.suffix}" if args.suffix else "")
    return 0
