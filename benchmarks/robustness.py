"""Scores of a weights file on the synthetic test rooms under the changes real maps show.

``python -m benchmarks robustness [--weights PATH] [--data data/rooms/test] [--limit N]`` scores the rooms
as generated, then under each :class:`ssen_ros.data.perturb.Perturbation` (no colour, grey,
camera colour shift, 30 % and 10 % density, 1.5 cm noise, 3 degree tilt, 120 m from the origin),
one row each with its AP50 difference to the clean row, and writes ``benchmarks/robustness.md``.
"""
from __future__ import annotations

import argparse
import math

from benchmarks import weights_line, write_results
from ssen_ros.config import SegmenterConfig
from ssen_ros.data.dataset import find_scenes
from ssen_ros.data.perturb import Perturbation
from ssen_ros.scoring import score_scenes, table_header
from ssen_ros.segmenter import Segmenter

PERTURBATIONS = (
    ("clean", None),
    ("no colour (LiDAR map)", Perturbation(colors="none")),
    ("grey (luma)", Perturbation(colors="grey")),
    ("camera colour shift (gamma 0.6-1.5, gain 0.7-1.2)", Perturbation(colors="shift")),
    ("30 % density", Perturbation(keep_fraction=0.3)),
    ("10 % density", Perturbation(keep_fraction=0.1)),
    ("1.5 cm position noise", Perturbation(noise=0.015)),
    ("3 degree tilt", Perturbation(tilt_deg=3.0)),
    ("120 m from the origin", Perturbation(offset=(120.0 / math.sqrt(2.0), 120.0 / math.sqrt(2.0), 0.0))),
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks robustness")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--data", default="data/rooms/test")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    scenes = find_scenes(args.data)[: args.limit]
    segmenter = Segmenter(SegmenterConfig(weights=args.weights))
    rows, clean = [], None
    for name, perturb in PERTURBATIONS:
        scores = score_scenes(segmenter, scenes, perturb)
        clean = scores.instance.ap50 if clean is None else clean
        rows.append(f"{scores.row(name)} {scores.instance.ap50 - clean:+.3f} |")
        print(rows[-1], flush=True)
    body = (weights_line(args.weights, segmenter) + "\n\n"
            f"Scenes: the first {len(scenes)} synthetic rooms of `{args.data}`, each change drawn per "
            "room from a fixed seed; whole pipeline with the default settings on the CPU. The goal: "
            "every row's AP50 within 0.05 of the clean row.\n\n"
            + table_header("change", ["AP50 - clean"]) + "\n" + "\n".join(rows))
    print(body)
    write_results("robustness", "Weights on the synthetic test rooms under real-world changes", body)
    return 0
