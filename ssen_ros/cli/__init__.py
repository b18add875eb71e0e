"""The ``ssen`` command line: one subcommand per module in this package.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``; they are
imported only when chosen, so ``ssen --help`` stays fast and never imports torch. Bad input
(our errors are ValueErrors that name the file, key or field) ends with one line and exit
code 2; ``SSEN_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from pathlib import Path
from typing import Iterable, Optional

SUBCOMMANDS = {
    # name: (module, one-line help)
    "generate": ("ssen_ros.cli.generate", "make labelled synthetic rooms in ScanNet format"),
    "evaluate": ("ssen_ros.cli.evaluate", "score a submission or a weights file with the ScanNet instance benchmark"),
    "segment": ("ssen_ros.cli.segment", "segment a PLY/PCD/ScanNet/rosbag2 cloud into instances"),
    "train": ("ssen_ros.cli.train", "train the semantic and embedding networks"),
    "demo": ("ssen_ros.cli.demo", "run the node on the bundled map and write what it published"),
}


class OutputPathError(ValueError):
    """An output path that would replace what the user gave, or is the wrong kind of path."""


def check_output(path: Path, option: str, inputs: "Iterable[Optional[Path]]" = (), folder: bool = False) -> None:
    """Before any work: the output ``path`` given as ``option`` is a folder when ``folder`` and
    otherwise a file where it exists already, and none of the run's ``inputs``."""
    if path.exists() and path.is_dir() != folder:
        raise OutputPathError(f"{option} {path}: exists and is {'not ' if folder else ''}a folder")
    if path.resolve() in {p.resolve() for p in inputs if p is not None}:
        raise OutputPathError(f"{option} {path}: is an input of this run; give another path")


def at_least(low: float, kind: type = float, above: bool = False):
    """An argparse type: a finite number of ``kind`` that is >= ``low`` (> ``low`` with ``above``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text} must be a finite number {'>' if above else '>='} {low}")
        return value
    return parse


def main(argv: "list[str] | None" = None) -> int:
    # OpenMP threads that spin-wait make torch many times slower when other processes share the
    # cores (benchmarks/sparse.md); it must be set before torch is imported to take effect.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="ssen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if argv and argv[0] in SUBCOMMANDS:  # build only the chosen subcommand's parser
        chosen = {argv[0]: SUBCOMMANDS[argv[0]]}
    else:
        chosen = {}
        for name, (_, help_text) in SUBCOMMANDS.items():
            sub.add_parser(name, help=help_text)
    for name, (module_name, help_text) in chosen.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        args = parser.parse_args(argv)
        try:
            return int(module.run(args) or 0)
        except (ValueError, OSError) as exc:  # our input errors subclass ValueError and name the culprit
            if os.environ.get("SSEN_DEBUG"):
                raise
            print(f"ssen {name}: error: {exc}", file=sys.stderr)
            return 2
    parser.parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
