"""Benchmarks that write their numbers to ``benchmarks/*.md`` with the command that made them.

Not part of the installed package: run them from the repository root with
``python -m benchmarks NAME [ARGS]`` (``benchmarks/__main__.py``); each module here has a
``main(argv)``. Machines here are noisy, so benchmarks report ratios measured in the same run
next to absolute times.
"""
from __future__ import annotations

import resource
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ssen_ros import checkpoint
from ssen_ros.report import write_report

if TYPE_CHECKING:
    from ssen_ros.segmenter import Segmenter

RESULTS_DIR = Path(__file__).resolve().parent
REPO = RESULTS_DIR.parent
"""The repository root: benchmark subprocesses start there, so ``-m benchmarks.NAME`` imports."""


def time_call(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def weights_line(weights: str, segmenter: "Segmenter") -> str:
    """One sentence naming the weights file a segmenter loaded: architecture, voxel size, inputs, step."""
    spec = segmenter.spec
    return (f"Weights: `{checkpoint.resolve(weights).name}` ({spec.arch}, {spec.voxel_size} m voxels, "
            f"{spec.in_channels} input channels, step {segmenter.meta.get('step', '?')}).")


def write_results(name: str, title: str, body: str, suffix: str = "") -> Path:
    """Write ``benchmarks/{name}{suffix}.md`` (``python -m benchmarks name``'s results)."""
    command = " ".join(["python -m benchmarks", name, *map(shlex.quote, sys.argv[2:])])
    return write_report(RESULTS_DIR / f"{name}{suffix}.md", title, command, body)
