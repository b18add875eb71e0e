"""Labelled synthetic rooms by seed, in fixed train/val/test splits, written as ScanNet scenes.

``generate_scene(seed)`` lays out a room (``room.py``) and scans it (``scan.py``); the same
seed always gives the same room and the same points. Splits are fixed, disjoint seed ranges
(sizes in the spirit of ScanNet v2's 1201 / 312 / 100 scans):

=======  ===================  =====
split    seeds                rooms
=======  ===================  =====
train    0 .. 1199            1200
val      10000 .. 10299       300
test     20000 .. 20099       100
=======  ===================  =====

Scenes are named ``synth{seed:05d}_00`` and written with ``ssen_ros.io.scannet`` as ScanNet
folders (``_vh_clean_2.ply`` points with colours, segments and aggregation files, labels
tsv), so one loader reads real ScanNet and these. Instance ids are per object for the 18
instance classes; walls and floors have instance -1 in memory and get one ScanNet object
per class on disk (as ScanNet gives walls and floors object ids); the benchmark treats them
as void either way. Implements no paper equation: it is the data for §IV.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssen_ros.synthetic.room import Room, make_room
from ssen_ros.synthetic.scan import Scan, scan_room

SPLITS: dict[str, range] = {
    "train": range(0, 1200),
    "val": range(10000, 10300),
    "test": range(20000, 20100),
}


@dataclass
class GeneratedScene:
    """One generated room: its ScanNet-style name, layout and scanned points."""

    name: str
    seed: int
    room: Room
    scan: Scan


def scene_name(seed: int) -> str:
    return f"synth{seed:05d}_00"


def split_seeds(split: str, count: int | None = None, start: int = 0) -> list[int]:
    """Seeds ``start .. start+count-1`` of a split (all remaining ones if ``count`` is None)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
    seeds = SPLITS[split]
    if not 0 <= start <= len(seeds):
        raise ValueError(f"start {start} outside the {len(seeds)} seeds of split {split!r}")
    stop = len(seeds) if count is None else start + count
    if count is not None and (count < 0 or stop > len(seeds)):
        raise ValueError(f"split {split!r} has {len(seeds)} seeds; start {start} + count {count} "
                         "goes past its end")
    return list(seeds[start:stop])


def generate_scene(seed: int, *, room_type: str | None = None, spacing: float = 0.02,
                   num_viewpoints: int = 12, noise_scale: float = 1.0) -> GeneratedScene:
    """Lay out and scan the room of ``seed`` (deterministic)."""
    room = make_room(seed, room_type, num_viewpoints=num_viewpoints)
    scan = scan_room(room, seed, spacing=spacing, noise_scale=noise_scale)
    return GeneratedScene(scene_name(seed), seed, room, scan)


def write_scene(out_dir: "Path | str", scene: GeneratedScene) -> Path:
    """Write ``out_dir/{name}/`` in ScanNet format; returns the folder."""
    from ssen_ros.io.scannet import write_scannet_scene

    folder = Path(out_dir) / scene.name
    s = scene.scan
    write_scannet_scene(folder, scene.name, s.points, s.colors, s.semantic, s.instance)
    return folder


def preview(scene: GeneratedScene, path: "Path | str", by: str = "instance") -> Path:
    """PNG of the scan coloured by ``instance``, ``class`` or ``rgb``, objects named; the walls
    between the oblique camera and the room are left out of the oblique view."""
    from ssen_ros.classes import CLASS_NAMES
    from ssen_ros.render import class_colors, render_instances, toward_camera

    s, room = scene.scan, scene.room
    values = {"instance": lambda: s.instance, "class": lambda: class_colors(s.semantic),
              "rgb": lambda: s.colors}
    if by not in values:
        raise ValueError(f"preview colouring {by!r}: choose from {sorted(values)}")
    # Walls whose inner side faces away from the oblique camera stand between it and the room.
    t = toward_camera("oblique")
    near = np.zeros(len(s), bool)
    on_wall = np.isin(s.semantic, [CLASS_NAMES.index(n) for n in
                                   ("wall", "door", "window", "picture", "curtain")])
    for coord, value, inward in ((1, 0.0, (0, 1)), (0, room.width, (-1, 0)),
                                 (1, room.depth, (0, -1)), (0, 0.0, (1, 0))):
        if np.dot(inward, t[:2]) < 0:
            near |= on_wall & (np.abs(s.points[:, coord] - value) < 0.4)
    labels = [(o.position + [0, 0, o.size[2] + 0.05], CLASS_NAMES[o.label]) for o in room.instances]
    title = (f"{scene.name}: {room.room_type} {room.width:.1f} x {room.depth:.1f} m, "
             f"{len(room.instances)} instances, {len(s):,} points")
    return render_instances(s.points, values[by](), path, labels_text=labels, title=title,
                            hidden={"oblique": near})
