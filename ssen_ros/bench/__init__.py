"""Benchmarks that write their numbers to ``benchmarks/*.md`` with the command that made them.

Each benchmark module has a ``main(argv)``; ``ssen bench NAME`` runs it. Machines here are
noisy, so benchmarks report ratios measured in the same run next to absolute times.
"""
from __future__ import annotations

import os
import platform
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


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


def machine_line() -> str:
    """One line naming the machine, Python, torch and thread counts, for result files."""
    from ssen_ros.sparse.torch_backend import tile_workers

    return (f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch intra-op thread(s), "
            f"{tile_workers()} tile worker(s) in the torch backend, "
            f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}")


def write_results(name: str, title: str, body: str, suffix: str = "") -> Path:
    """Write ``benchmarks/{name}{suffix}.md`` (``ssen bench name``'s results): title, the
    command that produced it, the machine, body."""
    RESULTS_DIR.mkdir(exist_ok=True)
    command = " ".join(["ssen bench", name, *map(shlex.quote, sys.argv[3:])])
    text = (f"# {title}\n\nProduced by `{command}` on {time.strftime('%Y-%m-%d')}.\n\n"
            f"Machine: {machine_line()}.\n\n{body.rstrip()}\n")
    path = RESULTS_DIR / f"{name}{suffix}.md"
    path.write_text(text)
    return path
