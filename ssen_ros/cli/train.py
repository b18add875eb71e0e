"""``ssen train CONFIG``: train both networks; with torchrun, on many GPUs or CPU processes."""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from ssen_ros.cli import check_output
from ssen_ros.config import TrainConfig, load_yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="training YAML (see config/train_paper.yaml)")
    parser.add_argument("--resume", type=Path, help="checkpoint to continue from (e.g. OUT/last.pt)")
    parser.add_argument("--data", help="override the config's dataset folder")
    parser.add_argument("--out", help="override the config's output folder")
    parser.add_argument("--steps", type=int, help="override the config's number of steps")
    parser.add_argument("--export", type=Path,
                        help="also write the final weights here in fp16 without optimizer state")


def run(args: argparse.Namespace) -> int:
    from ssen_ros.train import TrainingError, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_yaml(TrainConfig, args.config)
    overrides = {key: getattr(args, key) for key in ("data", "out", "steps") if getattr(args, key) is not None}
    config = replace(config, **overrides)  # checked as the file's keys are
    if args.export is not None:
        check_output(args.export, "--export", [args.config, args.resume])
    try:
        final = train(config, resume=args.resume)
    except TrainingError as exc:
        print(f"ssen train: {exc}", file=sys.stderr)
        return 1
    print(f"weights: {final}")
    if args.export is not None:
        from ssen_ros.checkpoint import export

        print(f"exported: {export(final, args.export)}")
    return 0
