"""What a training step costs per network architecture, and what a whole training run would.

``python -m benchmarks training`` writes ``benchmarks/training.md``. For each architecture it
builds ``config/train_real.yaml``'s trainer (its rooms, voxel size, batch, augmentations and
inputs) with both networks of that architecture and no initial weights, and times
``Trainer.train_step`` on the same batches for every architecture (drawn once, before the
timing: data preparation is not counted). The rows project the wall time of the shipped
weights' schedule (stage 1's steps plus stage 2's, ``docs/training.md``) on this machine.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks import peak_rss_mb, write_results

STAGE1_STEPS = 9500  # the shipped stage 1 (docs/training.md)
STAGE2_STEPS = 2000  # config/train_real.yaml


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks training", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/train_real.yaml"), help="training config")
    parser.add_argument("--archs", default="Res16UNet14S,Res16UNet14A,Res16UNet18A,Res16UNet34C",
                        help="architectures, comma-separated")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per architecture")
    parser.add_argument("--scenes", type=int, default=10, help="training rooms to draw batches from")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)

    import torch

    from ssen_ros.config import TrainConfig, load_yaml
    from ssen_ros.train import Trainer

    torch.set_num_threads(args.threads)
    base = replace(load_yaml(TrainConfig, args.config), init="", scenes=args.scenes)
    batches = None
    rows = []
    for arch in args.archs.split(","):
        trainer = Trainer(replace(base, arch=arch), torch.device("cpu"))
        torch.set_num_threads(args.threads)
        if batches is None:  # the same batches for every architecture
            batches = [trainer.batch() for _ in range(args.steps + 1)]
        params = sum(p.numel() for p in trainer.semantic.parameters())
        trainer.train_step(batches[0])  # warm-up
        times = []
        for batch in batches[1:]:
            t0 = time.perf_counter()
            trainer.train_step(batch)
            times.append(time.perf_counter() - t0)
        step = statistics.median(times)
        hours = step * (STAGE1_STEPS + STAGE2_STEPS) / 3600
        rows.append((arch, params, step, hours))
    small = rows[0][2]
    voxels = np.mean([len(b["coords"]) for b in batches[1:]])
    body = [
        f"Trainer of `{args.config}` ({base.voxel_size:g} m voxels, batch {base.batch_size}, "
        f"{base.in_channels} input channels, its augmentations), both networks of each architecture, "
        f"no initial weights; {args.steps} timed steps after one warm-up, the same batches for every "
        f"architecture (mean {voxels:,.0f} voxels per batch, from the first {args.scenes} training rooms); "
        f"median seconds per step; {args.threads} torch threads. The projection multiplies by the "
        f"shipped weights' schedule, {STAGE1_STEPS} + {STAGE2_STEPS} steps (`docs/training.md`), "
        "and leaves out data preparation, validation and the head re-fit.",
        "",
        f"| architecture | parameters per network | s / step | × {rows[0][0]} | hours for {STAGE1_STEPS} + {STAGE2_STEPS} steps |",
        "|---|---|---|---|---|",
        *(f"| {arch} | {params / 1e6:.2f}M | {step:.2f} | {step / small:.1f} | {hours:.1f} |"
          for arch, params, step, hours in rows),
        "",
        f"Peak RSS {peak_rss_mb():.0f} MiB.",
    ]
    path = write_results("training", "Training cost per architecture", "\n".join(body))
    print(path.read_text())
    return 0
