"""Live maps (issue 18): a synthetic house explored room by room, incremental against full runs.

``python -m benchmarks live`` writes ``benchmarks/live.md``. Held-out test rooms are laid side by side
into a house (whole rooms with their labels, no thinning). The map then changes as under SLAM:

- it grows room by room from the first ``--start`` rooms; the last room appears in two halves
  (a room that grows while it is explored);
- a loop closure shifts the last two rooms by a few centimetres;
- a few stray points appear (sensor noise: no tile should re-run);
- one chair moves by ``--chair-move`` metres.

With ``--change-margin`` a second incremental run counts only changes that near each tile's
core (``LiveConfig.change_margin``), to show what re-running fewer tiles costs in AP.

For every version, in one process and in this order: the incremental run
(:class:`ssen_ros.live.LiveSegmenter`, which carries its tiles from one version to the next),
a full run on the same tiles (:meth:`LiveSegmenter.full`), and a full ``Segmenter`` run (the
node without live mode; its tiles are stretched to each map). Reported per version: points,
changed tiles, seconds of each run, incremental / full ``Segmenter`` seconds and the part of it
that the re-run tiles' own stages took (the rest, 'changes' and 'stitch', grows with the whole
map; the re-run tiles' part bounds what an exact update can cost), the ScanNet AP of
the incremental result scored against each full result as ground truth, AP against the rooms'
labels, the kept tiles' results in MiB and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from benchmarks import peak_rss_mb, write_results
from benchmarks.cluster import DEFAULT_SCENES, shown

T = TypeVar("T")


@dataclass
class Version:
    """One version of the map: its name and labelled points."""

    name: str
    points: np.ndarray
    colors: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


def house_rooms(scenes: list[Path], target: int, gap: float = 0.5) -> list[Version]:
    """Rooms of ``scenes``, in order, until they hold ``target`` points, translated onto a
    square-ish grid ``gap`` metres apart; instance ids are unique across rooms."""
    from ssen_ros.data.dataset import load_scene

    rooms, total = [], 0
    for folder in scenes:
        scene = load_scene(folder)
        rooms.append(scene)
        total += len(scene.points)
        if total >= target:
            break
    cols = int(np.ceil(np.sqrt(len(rooms))))
    out, y0, next_id = [], 0.0, 0
    for r in range(0, len(rooms), cols):
        x0, depth = 0.0, 0.0
        for scene in rooms[r:r + cols]:
            p = scene.points.astype(np.float64)
            lo, hi = p.min(0), p.max(0)
            instance = np.where(scene.instance >= 0, scene.instance + next_id, -1)
            next_id = int(instance.max(initial=next_id - 1)) + 1
            out.append(Version(scene.name, (p - [lo[0] - x0, lo[1] - y0, 0.0]).astype(np.float32),
                               scene.colors, scene.semantic, instance))
            x0 += hi[0] - lo[0] + gap
            depth = max(depth, hi[1] - lo[1])
        y0 += depth + gap
    return out


def _join(name: str, parts: list[Version]) -> Version:
    return Version(name, *(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("points", "colors", "semantic", "instance")))


def _part(room: Version, keep: np.ndarray) -> Version:
    return Version(room.name, room.points[keep], room.colors[keep], room.semantic[keep], room.instance[keep])


def exploration(rooms: list[Version], start: int, shift: float, chair_move: float,
                seed: int = 0) -> list[Version]:
    """The versions of the map (module docstring)."""
    from ssen_ros.classes import CLASS_NAMES

    versions = [_join(f"{k} rooms", rooms[:k]) for k in range(start, len(rooms))]
    last = rooms[-1]
    half = last.points[:, 0] < np.median(last.points[:, 0])
    versions.append(_join(f"{len(rooms) - 1} rooms + half of one", rooms[:-1] + [_part(last, half)]))
    versions.append(_join(f"{len(rooms)} rooms", rooms))
    moved = [replace(r, points=r.points + np.float32([shift, shift / 2, 0])) for r in rooms[-2:]]
    closed = _join(f"loop closure: last 2 rooms shifted {shift * 100:.0f} cm", rooms[:-2] + moved)
    versions.append(closed)
    rng = np.random.default_rng(seed)
    lo, hi = closed.points.min(0), closed.points.max(0)
    stray = rng.uniform(lo, hi, (5, 3)).astype(np.float32)
    noisy = Version("5 stray points (noise)", np.concatenate([closed.points, stray]),
                    np.concatenate([closed.colors, np.full((5, 3), 128, np.uint8)]),
                    np.concatenate([closed.semantic, np.full(5, -1)]),
                    np.concatenate([closed.instance, np.full(5, -1)]))
    versions.append(noisy)
    middle = rooms[len(rooms) // 2]
    chair = CLASS_NAMES.index("chair")
    ids = np.unique(middle.instance[(middle.semantic == chair) & (middle.instance >= 0)])
    if len(ids) == 0:
        raise ValueError(f"room {middle.name} has no chair to move")
    mask = noisy.instance == ids[0]
    points = noisy.points.copy()
    points[mask] += np.float32([chair_move, 0, 0])
    versions.append(replace(noisy, name=f"one chair moved {chair_move * 100:.0f} cm", points=points))
    return versions


def per_class_ids(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Instance ids renumbered 0.. within each class: the evaluator's ground-truth ids must stay
    below 999 (``label * 1000 + id``), and a house holds more instances than that."""
    out = np.full(len(instance), -1, dtype=np.int64)
    has = instance >= 0
    pairs, inverse = np.unique(np.stack([semantic[has], instance[has]], 1), axis=0, return_inverse=True)
    first = np.searchsorted(pairs[:, 0], pairs[:, 0])  # the pairs are sorted by class first
    out[has] = (np.arange(len(pairs)) - first)[inverse.reshape(-1)]
    return out


def against(result, reference) -> float:
    """ScanNet AP of ``result`` with ``reference``'s instances (and their classes) as ground truth."""
    from ssen_ros.evaluate import evaluate_scenes
    from ssen_ros.scoring import predictions

    classes = np.full(len(reference.instances) + 1, -1, dtype=np.int64)
    for record in reference.instances:
        classes[record.id] = record.class_id
    truth = np.where(reference.instance >= 0, classes[reference.instance], -1)
    return evaluate_scenes([(truth, per_class_ids(truth, reference.instance), predictions(result))]).mean_ap


def labels_ap(result, version: Version) -> float:
    """ScanNet AP of ``result`` against the rooms' labels."""
    from ssen_ros.evaluate import evaluate_scenes
    from ssen_ros.scoring import predictions

    ids = per_class_ids(version.semantic, version.instance)
    return evaluate_scenes([(version.semantic, ids, predictions(result))]).mean_ap


def cache_mb(live) -> float:
    """MiB held by the kept tile results."""
    return sum(a.nbytes for r in live.tiles_.values() for a in vars(r).values()
               if isinstance(a, np.ndarray)) / 2**20


def on_worker(fn: Callable[[], T]) -> T:
    """``fn()`` on a worker thread, as the node segments (torch's networks ran several times
    slower on this machine's main thread: ``benchmarks.node``)."""
    import threading

    out: list = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    if not out:
        raise RuntimeError("the benchmark's worker thread failed (its traceback is above)")
    return out[0]


def compare(segmenter, config, versions: list[Version], change_margin: float = 0.0
            ) -> "tuple[list[str], tuple[str, str], list[str]]":
    """One table row per version (module docstring), the last incremental run's stages, and
    rows of a second incremental run with ``live.change_margin`` = ``change_margin`` (0: none)."""
    from ssen_ros.live import LiveSegmenter

    warm = versions[0].points[:20_000], versions[0].colors[:20_000]
    segmenter(*warm)  # warm-up, untimed
    live = LiveSegmenter(segmenter, config)
    narrow = LiveSegmenter(segmenter, replace(config, change_margin=change_margin))
    rows, last, narrow_rows = [], ("", ""), []
    for k, v in enumerate(versions):
        t0 = time.perf_counter()
        inc = live(v.points, v.colors)
        t_inc = time.perf_counter() - t0
        changed, tiles, full_flag = len(live.changed_), inc.num_tiles, live.full_
        t0 = time.perf_counter()
        same_tiles = LiveSegmenter(segmenter, config).full(v.points, v.colors)
        t_same = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain = segmenter(v.points, v.colors)
        t_plain = time.perf_counter() - t0
        share = "" if k == 0 else f"{changed / tiles:.0%}"
        tile_work = sum(t for s, t in inc.timings.items() if s not in ("changes", "stitch", "total"))
        if change_margin:
            t0 = time.perf_counter()
            near = narrow(v.points, v.colors)
            t_near = time.perf_counter() - t0
            narrow_rows.append(
                f"| {v.name} | {len(narrow.changed_)} / {near.num_tiles}{' (full)' if narrow.full_ else ''} | "
                f"{t_near:.2f} | **{t_near / t_plain:.0%}** | {against(near, same_tiles):.4f} | "
                f"{labels_ap(near, v):.4f} |")
            print(narrow_rows[-1], flush=True)
        rows.append(
            f"| {v.name} | {len(v.points):,} | {changed} / {tiles}{' (full)' if full_flag else ''} | {share} | "
            f"{t_inc:.2f} | {t_same:.2f} | {t_plain:.2f} | **{t_inc / t_plain:.0%}** | "
            f"{tile_work / t_plain:.0%} | "
            f"{against(inc, same_tiles):.4f} | {against(inc, plain):.4f} | {labels_ap(inc, v):.4f} | "
            f"{labels_ap(same_tiles, v):.4f} | {labels_ap(plain, v):.4f} | {cache_mb(live):.0f} | "
            f"{peak_rss_mb():.0f} |")
        stages = ", ".join(f"{s} {t:.2f}" for s, t in inc.timings.items() if s != "total")
        last = (v.name, stages)
        print(rows[-1], flush=True)
        print(f"   incremental stages: {stages}", flush=True)
    return rows, last, narrow_rows


def node_overhead(weights: str, config, versions: list[Version]) -> list[str]:
    """Rows of the node's own stages (``MapProcessor`` with ``live.enabled``, on a worker thread
    as in the node) next to the segmenter's seconds, one per version; the first one is a full run."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from benchmarks.node import OVERHEAD_STAGES, BenchPublishers
    from ssen_ros.config import NodeConfig, SegmenterConfig
    from ssen_ros.io import Cloud
    from ssen_ros.ros.convert import cloud_message
    from ssen_ros.ros.processing import MapProcessor

    processor = MapProcessor(NodeConfig(segmenter=SegmenterConfig(weights=weights, device="cpu"), live=config))
    rows: list[str] = []
    publishers = BenchPublishers()

    def work() -> list[str]:
        for v in versions:
            out = processor(serialize_message(cloud_message(Cloud(v.points, v.colors), Header(frame_id="map"))))
            publishers.publish(out)
            node_s = sum(out.timings[k] for k in OVERHEAD_STAGES)
            rows.append(f"| {v.name} | {len(processor.live.changed_)} | "
                        + " | ".join(f"{out.timings[k] * 1e3:.0f}" for k in OVERHEAD_STAGES)
                        + f" | {node_s * 1e3:.0f} | {out.segmenter_seconds * 1e3:.0f} | "
                        f"**{node_s / out.segmenter_seconds:.1%}** |")
            print(rows[-1], flush=True)
        return rows

    with publishers:
        return on_worker(work)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks live", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="default", help="weights file")
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of test scenes")
    parser.add_argument("--points", type=int, default=3_000_000, help="points of the whole house")
    parser.add_argument("--start", type=int, default=9, help="rooms in the first map")
    parser.add_argument("--tile-size", type=float, default=0.0,
                        help="live tile edge (0: the config's); results go to live_tileN.md")
    parser.add_argument("--shift", type=float, default=0.03, help="loop-closure shift in metres")
    parser.add_argument("--chair-move", type=float, default=0.3, help="how far the chair moves, metres")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--change-margin", type=float, default=0.5,
                        help="live.change_margin of a second incremental run (0: none)")
    args = parser.parse_args(argv)

    import torch

    from benchmarks.node import OVERHEAD_STAGES
    from ssen_ros.config import LiveConfig, SegmenterConfig
    from ssen_ros.data.dataset import find_scenes
    from ssen_ros.segmenter import Segmenter

    torch.set_num_threads(args.threads)
    config = LiveConfig(enabled=True)
    if args.tile_size:
        config = replace(config, tile_size=args.tile_size)
    rooms = house_rooms(find_scenes(args.scenes), args.points)
    versions = exploration(rooms, min(args.start, len(rooms) - 1), args.shift, args.chair_move)
    segmenter = Segmenter(SegmenterConfig(weights=args.weights, device="cpu"))
    load_before = os.getloadavg()[0]
    rows, last, narrow_rows = on_worker(lambda: compare(segmenter, config, versions, args.change_margin))
    body = [
        f"House: {len(rooms)} rooms of `{shown(args.scenes)}` side by side, {len(versions[-1].points):,} "
        f"points at the end. Live tiles {config.tile_size:g} m with {segmenter.config.tile_overlap:g} m "
        f"margins, `changed_voxels` {config.changed_voxels}, `full_share` {config.full_share}; voxel "
        f"{segmenter.voxel_size:g} m; {args.threads} torch threads; load average {load_before:.2f} before "
        f"the run, {os.getloadavg()[0]:.2f} after (2 cores: above 1, other work competed).",
        "",
        "Per version, in one process, on a worker thread as in the node: **incremental** (the live segmenter, carrying its tiles from "
        "the version before), **full, same tiles** (every live tile afresh), **full Segmenter** "
        "(what the node does without live mode: tiles stretched to the map). AP columns: ScanNet "
        "AP of the incremental result with a full result as ground truth (1.0: the same "
        "instances), then each run against the rooms' labels. The first version has no tiles "
        "to keep, so its incremental run is a full one.",
        "",
        "| version | points | tiles re-run | share | incremental s | full, same tiles s | full Segmenter s "
        "| incremental / full Segmenter | re-run tiles' stages / full Segmenter "
        "| AP inc. vs full same tiles | AP inc. vs full Segmenter "
        "| AP labels: inc. | AP labels: full same tiles | AP labels: full Segmenter | kept tiles MiB "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Stages of the last incremental run ({last[0]}), seconds: {last[1]}.",
        "",
        *([f"### With `live.change_margin` {args.change_margin:g} m",
           "",
           f"A second incremental run in the same process, counting only changes within "
           f"{args.change_margin:g} m of a tile's core (the default counts the whole "
           f"{segmenter.config.tile_overlap:g} m margin, which is what makes the result exact). Time "
           "against the same full `Segmenter` run as above; AP against the full run on the same tiles "
           "and against the rooms' labels.",
           "",
           "| version | tiles re-run | incremental s | incremental / full Segmenter | AP vs full same tiles "
           "| AP labels |",
           "|---|---|---|---|---|---|",
           *narrow_rows, ""] if narrow_rows else []),
        "## The node's overhead in live mode",
        "",
        "`MapProcessor` (the node's per-map code) with `live.enabled`, on a worker thread, on the "
        "last versions of the map (the first of them without kept tiles: a full run). Node stages "
        "in ms next to the segmenter's (incremental) time. Goal: node overhead <= 10 % of the segmenter.",
        "",
        "| version | tiles re-run | " + " | ".join(OVERHEAD_STAGES) + " | node total | segmenter | node / segmenter |",
        "|---|---|" + "---|" * (len(OVERHEAD_STAGES) + 3),
        *node_overhead(args.weights, config, versions[-3:]),
    ]
    path = write_results("live", "Live maps: incremental against full runs", "\n".join(body),
                         f"_tile{args.tile_size:g}" if args.tile_size else "")
    print(path.read_text())
    return 0
