"""``ssen generate OUT``: write labelled synthetic rooms as ScanNet scene folders."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ssen_ros.cli import at_least


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ssen_ros.synthetic.generate import SPLITS
    from ssen_ros.synthetic.room import ROOM_TYPES

    parser.add_argument("out", type=Path, help="output folder (one scene folder per room)")
    parser.add_argument("--split", choices=sorted(SPLITS), default="train",
                        help="seed range: " + ", ".join(f"{k} {v.start}..{v.stop - 1}" for k, v in SPLITS.items()))
    parser.add_argument("--count", type=at_least(1, int), default=None, help="rooms to make (default: the whole split)")
    parser.add_argument("--start", type=at_least(0, int), default=0, help="index of the first seed within the split")
    parser.add_argument("--room-type", choices=ROOM_TYPES, default=None, help="force one room type")
    parser.add_argument("--spacing", type=at_least(0.0, above=True), default=0.02, help="point spacing in metres")
    parser.add_argument("--noise-scale", type=at_least(0.0), default=1.0,
                        help="scale of the scan's geometric artefacts (range noise, pose drift, doubled "
                             "surfaces, holes; synthetic/scan.py steps 3-4): 0 gives exact surfaces")
    parser.add_argument("--preview", action="store_true", help="also write OUT/previews/SCENE.png")
    parser.add_argument("--preview-by", choices=("instance", "class", "rgb"), default="instance",
                        help="colouring of the preview pictures")


def run(args: argparse.Namespace) -> int:
    from ssen_ros.synthetic.generate import generate_scene, preview, split_seeds, write_scene

    try:
        seeds = split_seeds(args.split, args.count, args.start)
    except ValueError as e:
        print(f"ssen generate: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    names = []
    for seed in seeds:
        t0 = time.perf_counter()
        scene = generate_scene(seed, room_type=args.room_type, spacing=args.spacing,
                               noise_scale=args.noise_scale)
        folder = write_scene(args.out, scene)
        names.append(scene.name)
        line = (f"{folder}: {scene.room.room_type}, {len(scene.room.instances)} instances, "
                f"{len(scene.scan):,} points, {time.perf_counter() - t0:.1f} s")
        if args.preview:
            line += f", preview {preview(scene, args.out / 'previews' / f'{scene.name}.png', args.preview_by)}"
        print(line, flush=True)
    listing = args.out / f"{args.split}.txt"  # every scene of the folder, so --start extends it
    if listing.is_file():
        names = sorted(set(listing.read_text().split()) | set(names))
    listing.write_text("".join(f"{n}\n" for n in names))
    return 0
