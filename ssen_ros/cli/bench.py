"""``ssen bench NAME [ARGS]``: run ``ssen_ros.bench.NAME.main(ARGS)``, which writes benchmarks/NAME.md."""
from __future__ import annotations

import argparse
import importlib
import pkgutil

import ssen_ros.bench


def _names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(ssen_ros.bench.__path__))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=_names(), help="which benchmark")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that benchmark")


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(f"ssen_ros.bench.{args.name}").main(args.args) or 0)
