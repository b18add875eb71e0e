"""``python -m benchmarks NAME [ARGS]``: run ``benchmarks.NAME.main(ARGS)``, which writes
``benchmarks/NAME.md``. Run from the repository root."""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    # Set before torch is imported, as the `ssen` command and the node do (benchmarks/sparse.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=names, help="which benchmark")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that benchmark")
    args = parser.parse_args(argv)
    return int(importlib.import_module(f"benchmarks.{args.name}").main(args.args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
