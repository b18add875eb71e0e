"""Result files: measured numbers in markdown, with the command and the machine that made them.

Numbers live in these files (``benchmarks/*.md``) and not in docstrings, so they are regenerated
rather than left to go stale.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def machine_line() -> str:
    """One line naming the machine, Python, torch and thread counts, for result files."""
    import torch

    from ssen_ros.sparse.torch_backend import tile_workers

    return (f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch intra-op thread(s), "
            f"{tile_workers()} tile worker(s) in the torch backend, "
            f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}")


def write_report(path: Path, title: str, command: str, body: str) -> Path:
    """Write ``path``: title, the command that produced it, today's date, the machine, body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\nProduced by `{command}` on {time.strftime('%Y-%m-%d')}.\n\n"
                    f"Machine: {machine_line()}.\n\n{body.rstrip()}\n")
    return path
