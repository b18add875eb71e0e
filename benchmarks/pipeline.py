"""The whole pipeline (paper §III): per-stage times, peak memory and speed-up over the reference.

``python -m benchmarks pipeline`` writes ``benchmarks/pipeline.md``. Two configurations, same weights:

- **ours**: the defaults (torch sparse backend, 'fast' clustering, tiling of large maps);
- **reference**: MinkowskiEngine backend and 'exact' HDBSCAN (the authors' stack), with the
  same tiling so the largest maps fit;
- **untiled**: ours with ``tile_size: 0``, on the sizes of ``--untiled-sizes``, to show what
  tiling saves.

Each configuration runs in a fresh subprocess, after an untimed warm-up:

1. the held-out synthetic test rooms: ScanNet AP / AP50 and mIoU from
   :func:`ssen_ros.scoring.score_scenes`, mean seconds per scene per stage, and the end-to-end
   ratio reference / ours (issue 6's goal: >= 5x at the same AP on 2 CPU cores), under each
   OpenMP setting of ``--room-runs``: the torch backend runs thousands of small parallel ops per
   scene, so OMP_WAIT_POLICY=PASSIVE (which ``ssen`` sets unless the environment says otherwise)
   makes it about 3x slower on an idle machine than ACTIVE, which in turn is far slower on a busy
   one; MinkowskiEngine hardly cares;
2. maps of 50k, 200k, 1M and 3M points made of those rooms side by side (randomly thinned to
   the exact count): per-stage seconds, tiles, peak RSS (goal: 3M points in 6 GB on CPU), each
   configuration and size in its own process so peak RSS does not mix (warm-up: 20k of the
   map's points), under the inherited OpenMP setting;
3. what bounds the per-room ratio: both networks' sparse-convolution FLOPs per room against
   this machine's dense GEMM rate, measured in the same run, and what the 5x goal would ask
   of the networks given the other stages' measured times.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks import REPO, write_results
from benchmarks.cluster import DEFAULT_SCENES, shown
STAGES = ("crop", "voxelize", "semantic", "embedding", "cluster", "instances", "stitch")
CONFIGS = ("ours", "reference", "untiled")


def segmenter_config(name: str, weights: str, tile_size: float = 0.0):
    """The two configurations compared, on the same weights; ``tile_size`` 0: the config's."""
    from ssen_ros.config import SegmenterConfig

    ours = SegmenterConfig(weights=weights, backend="torch", device="cpu")
    if tile_size:
        ours = replace(ours, tile_size=tile_size)
    if name == "ours":
        return ours
    if name == "reference":
        return replace(ours, backend="minkowski", cluster=replace(ours.cluster, method="exact"))
    if name == "untiled":
        return replace(ours, tile_size=0.0)
    raise ValueError(f"unknown configuration {name!r}; choose from {CONFIGS}")


def map_cloud(scenes: list[Path], n: int, gap: float = 0.5, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """``n`` points (float32, with uint8 colours) from the first rooms of ``scenes`` laid out
    side by side on a square-ish grid, thinned at random; also how many rooms were used."""
    from ssen_ros.io.ply import read_ply

    rooms, total = [], 0
    for folder in scenes * (1 + n // 100_000):  # cycle when the rooms are too few
        cloud = read_ply(folder / f"{folder.name}_vh_clean_2.ply")
        rooms.append(cloud)
        total += len(cloud)
        if total >= n:
            break
    cols = int(np.ceil(np.sqrt(len(rooms))))
    points, colors, y0 = [], [], 0.0
    for r in range(0, len(rooms), cols):
        x0, depth = 0.0, 0.0
        for cloud in rooms[r:r + cols]:
            p = cloud.points.astype(np.float64)
            lo, hi = p.min(0), p.max(0)
            points.append((p - [lo[0] - x0, lo[1] - y0, 0.0]).astype(np.float32))
            colors.append(cloud.colors)
            x0 += hi[0] - lo[0] + gap
            depth = max(depth, hi[1] - lo[1])
        y0 += depth + gap
    points, colors = np.concatenate(points), np.concatenate(colors)
    keep = np.sort(np.random.default_rng(seed).choice(len(points), n, replace=False))
    return points[keep], colors[keep], len(rooms)


def _worker(job: dict) -> dict:
    """Run one job in this (fresh) process and return its numbers."""
    import torch

    torch.set_num_threads(job["threads"])
    if job.get("config") == "bound":
        return _bound(job)
    return _rooms(job) if "scenes" in job else _map(job)


def _rooms(job: dict) -> dict:
    """One configuration on the test rooms: scores, mean seconds per scene and stage, peak RSS."""
    from benchmarks import peak_rss_mb
    from ssen_ros.data.dataset import load_scene
    from ssen_ros.scoring import score_scenes
    from ssen_ros.segmenter import Segmenter

    scenes = [Path(s) for s in job["scenes"]]
    segmenter = Segmenter(segmenter_config(job["config"], job["weights"], job["tile_size"]))
    first = load_scene(scenes[0])
    segmenter(first.points, first.colors)  # warm-up, untimed
    timings: list[dict] = []

    def recorded(points, colors=None):
        result = segmenter(points, colors)
        timings.append(result.timings)
        return result

    scores = score_scenes(recorded, scenes).summary()
    mean = {k: float(np.mean([t.get(k, 0.0) for t in timings])) for k in (*STAGES, "total")}
    return {"scores": scores, "timings": mean, "peak_rss_mb": peak_rss_mb()}


def _bound(job: dict) -> dict:
    """How close the networks run to the machine's GEMM rate, all measured in this process
    within seconds (the machine's speed drifts over a run): sparse-convolution FLOPs per test
    room (2 x pairs x C_in x C_out over every convolution of both networks, 1x1 heads left out),
    the networks' seconds on those rooms, and the float32 GEMM rate on the shape of the widest
    full-resolution layer as one dense matmul (27 x 48 inputs, 32 outputs, 512 rows: no
    gathers, the best case), before and after the rooms."""
    import time

    import torch

    from ssen_ros.data.dataset import load_scene
    from ssen_ros.segmenter import Segmenter
    from ssen_ros.sparse import torch_backend

    def gemm_rate() -> float:
        with torch.inference_mode():
            threads = torch.get_num_threads()
            torch.set_num_threads(job["threads"])  # the Segmenter leaves one intra-op thread
            a, b = torch.randn(512, 27 * 48), torch.randn(27 * 48, 32)
            for _ in range(20):
                a @ b
            rounds, t0 = 200, time.perf_counter()
            for _ in range(rounds):
                a @ b
            seconds = time.perf_counter() - t0
            torch.set_num_threads(threads)
        return 2 * a.shape[0] * a.shape[1] * b.shape[1] * rounds / seconds

    segmenter = Segmenter(segmenter_config("ours", job["weights"], job["tile_size"]))
    clouds = [load_scene(Path(scene)) for scene in job["scenes"]]
    segmenter(clouds[0].points, clouds[0].colors)  # warm-up
    flops, plain = [0], torch_backend.kernel_conv

    def counted(x, weight, kmap):
        flops[0] += 2 * kmap.num_pairs * weight.shape[1] * weight.shape[2]
        return plain(x, weight, kmap)

    before, seconds = gemm_rate(), 0.0
    torch_backend.Convolution.apply_map = staticmethod(counted)  # every layer class inherits it
    try:
        for cloud in clouds:
            timings = segmenter(cloud.points, cloud.colors).timings
            seconds += timings["semantic"] + timings["embedding"]
    finally:
        torch_backend.Convolution.apply_map = staticmethod(plain)
    return {"flops_per_scene": flops[0] / len(clouds), "network_s_per_scene": seconds / len(clouds),
            "gemm_before": before, "gemm_after": gemm_rate()}


def _map(job: dict) -> dict:
    """One configuration on one map, after a warm-up on 20k of its points."""
    from benchmarks import peak_rss_mb
    from ssen_ros.segmenter import Segmenter

    segmenter = Segmenter(segmenter_config(job["config"], job["weights"], job["tile_size"]))
    with np.load(job["cloud"]) as z:
        points, colors = z["points"], z["colors"]
    segmenter(points[:20_000], colors[:20_000])  # warm-up, untimed
    result = segmenter(points, colors)
    return {"timings": result.timings, "voxels": result.num_voxels,
            "foreground": result.num_foreground_voxels, "tiles": result.num_tiles,
            "instances": len(result.instances), "peak_rss_mb": peak_rss_mb()}


def _run_job(job: dict, wait_policy: "str | None" = None) -> dict:
    env = dict(os.environ)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    job["load_before"] = os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-m", "benchmarks.pipeline", "--worker", json.dumps(job)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark job {job.get('config', 'rooms')} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"load_before": job["load_before"]}


def bound_section(setting: str, rooms: dict, bound: dict, threads: int) -> list[str]:
    """Section 3: what 5x per room would ask of the networks, against the machine's GEMM rate
    (the test rooms' first setting). Seconds come from the rooms' runs; the networks' share of
    the GEMM rate from :func:`_bound`, measured in one process, so drifts of the machine's speed
    between runs cancel."""
    reference, ours = rooms["reference"]["timings"]["total"], rooms["ours"]["timings"]
    networks = ours["semantic"] + ours["embedding"]
    rest = ours["total"] - networks
    flops = bound["flops_per_scene"]
    gemm = (bound["gemm_before"] + bound["gemm_after"]) / 2
    share = flops / bound["network_s_per_scene"] / gemm  # of the GEMM rate, same process
    budget = reference / 5
    at_gemm = networks * share  # the networks' seconds at the GEMM rate, in this run's time
    needed = (f"{budget - rest:.3f} ({networks / (budget - rest):.1f}x faster than ours)" if budget > rest
              else "none: the other stages alone take longer than the 5x budget")
    return [
        "## 3. What bounds the ratio per room",
        "",
        f"Test rooms, {setting}. Both networks' sparse convolutions: **{flops / 1e9:.1f} GFLOP per "
        "scene** (2 x pairs x C_in x C_out; 1x1 heads left out). This machine's float32 GEMM rate, "
        f"as one dense {threads}-thread matmul of the widest full-resolution layer's shape (512 x "
        f"1296 by 1296 x 32, no gathers): {bound['gemm_before'] / 1e9:.0f} and "
        f"{bound['gemm_after'] / 1e9:.0f} GFLOPS before and after running the networks on the "
        f"rooms in the same process, where they averaged {flops / bound['network_s_per_scene'] / 1e9:.0f} "
        f"GFLOPS (kernel maps and thin layers included): **{share:.0%} of the GEMM rate**. This "
        "machine's speed drifts between runs, so the table states seconds of the rooms' run and "
        "scales them by that share.",
        "",
        "| | seconds per scene |",
        "|---|---|",
        f"| reference, end to end | {reference:.3f} |",
        f"| 5x goal: ours end to end | {budget:.3f} |",
        f"| ours, networks (semantic + embedding) | {networks:.3f} |",
        f"| ours, every other stage (crop, voxelize, cluster, instances) | {rest:.3f} |",
        f"| networks needed for 5x with the other stages as they are | {needed} |",
        f"| networks at the machine's dense GEMM rate (a floor) | {at_gemm:.3f} |",
        "",
        f"With the networks at the GEMM rate and every other stage as it is, reference / ours would be "
        f"{reference / (rest + at_gemm):.1f}x; with the networks as they are and every other stage "
        f"free, {reference / networks:.1f}x.",
    ]


def _stage_cells(timings: dict) -> str:
    return " | ".join(f"{timings.get(s, 0.0):.3f}" for s in (*STAGES, "total"))


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="default", help="weights file (both configurations)")
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of test scenes")
    parser.add_argument("--max-scenes", type=int, default=0, help="use only the first N scenes (0: all)")
    parser.add_argument("--sizes", default="50000,200000,1000000,3000000", help="map sizes in points")
    parser.add_argument("--reference-sizes", default="50000,200000,1000000",
                        help="map sizes the reference also runs on")
    parser.add_argument("--untiled-sizes", default="3000000",
                        help="map sizes also run without tiling")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per map run")
    parser.add_argument("--room-runs", default="PASSIVE:2,ACTIVE:2,PASSIVE:1",
                        help="OMP_WAIT_POLICY:threads settings the test rooms run under")
    parser.add_argument("--tile-size", type=float, default=0.0,
                        help="segmenter.tile_size of every configuration (0: the config's); results go "
                             "to pipeline_tileN.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0

    import torch

    from ssen_ros import checkpoint
    from ssen_ros.data.dataset import find_scenes

    torch.set_num_threads(args.threads)  # as in the workers, so the results' machine line is true
    weights = str(checkpoint.resolve(args.weights))
    spec = checkpoint.load(weights, backend="torch")[0]
    scenes = find_scenes(args.scenes)[: args.max_scenes or None]
    load_before = os.getloadavg()[0]
    common = {"weights": weights, "threads": args.threads, "tile_size": args.tile_size}
    score_rows, stage_rows, ratios, first = [], [], [], None
    for run in args.room_runs.split(","):
        policy, threads = run.split(":")
        setting = f"{policy}, {threads} thread{'s' * (threads != '1')}"
        rooms = {c: _run_job({**common, "threads": int(threads), "config": c,
                              "scenes": [str(s) for s in scenes]}, policy) for c in ("ours", "reference")}
        first = first or (setting, rooms)
        ratio = rooms["reference"]["timings"]["total"] / rooms["ours"]["timings"]["total"]
        ratios.append(f"{ratio:.1f}x with {setting}")
        for c, r in rooms.items():
            s = r["scores"]
            ratio_cell = f"{ratio:.1f}x" if c == "reference" else ""
            score_rows.append(f"| {setting} | {c} | {s['AP']:.4f} | {s['AP50']:.4f} | {s['AP25']:.4f} | "
                              f"{s['mIoU']:.4f} | {r['timings']['total']:.3f} | {ratio_cell} |")
            stage_rows.append(f"| {setting} | {c} | {_stage_cells(r['timings'])} | {r['peak_rss_mb']:.0f} | "
                              f"{r['load_before']:.2f} |")

    bound = _run_job({**common, "config": "bound", "scenes": [str(s) for s in scenes]})
    map_rows = []
    also = {"reference": {int(s) for s in args.reference_sizes.split(",") if s},
            "untiled": {int(s) for s in args.untiled_sizes.split(",") if s}}
    with tempfile.TemporaryDirectory(prefix="ssen_bench_") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            points, colors, used = map_cloud(scenes, n)
            path = Path(tmp) / f"map_{n}.npz"
            np.savez(path, points=points, colors=colors)
            extent = points[:, :2].max(0) - points[:, :2].min(0)
            totals = {}
            for c in CONFIGS:
                if c in also and n not in also[c]:
                    continue
                r = _run_job({**common, "config": c, "cloud": str(path)})
                totals[c] = r["timings"]["total"]
                ratio_cell = (f"{totals['reference'] / totals['ours']:.1f}x" if c == "reference" else "")
                map_rows.append(f"| {n:,} ({used} rooms, {extent[0]:.0f} x {extent[1]:.0f} m) | {c} | "
                                f"{r['voxels']:,} | {r['foreground']:,} | {r['tiles']} | {r['instances']} | "
                                f"{_stage_cells(r['timings'])} | {r['peak_rss_mb']:.0f} | {ratio_cell} |")
    tiles = segmenter_config("ours", weights, args.tile_size)
    body = [
        f"Weights `{Path(weights).name}` ({spec.arch}, {spec.voxel_size} m voxels), CPU; load "
        f"average {load_before:.2f} before the run, {os.getloadavg()[0]:.2f} after (2 cores: above 1, "
        "other work competed). **ours**: torch backend, "
        "'fast' clustering; **reference**: MinkowskiEngine backend, 'exact' HDBSCAN (the authors' "
        f"stack). Both tile maps wider than {tiles.tile_size:g} m + 2 x {tiles.tile_overlap:g} m margins "
        f"({'`--tile-size`' if args.tile_size else 'the default `tile_size`'} and `tile_overlap`, "
        "`ssen_ros.tiling`); "
        "**untiled**: ours with `tile_size: 0`.",
        "",
        f"## 1. Test rooms ({len(scenes)} scenes of `{shown(args.scenes)}`)",
        "",
        f"**End to end, reference / ours: {'; '.join(ratios)}** (mean seconds per scene, each "
        "configuration in its own process after a warm-up scene). Goal: >= 5x at the same AP. "
        "`ssen` sets OMP_WAIT_POLICY=PASSIVE unless the environment says otherwise.",
        "",
        "| OpenMP wait, torch threads | configuration | AP | AP50 | AP25 | mIoU | s/scene | reference / ours |",
        "|---|---|---|---|---|---|---|---|",
        *score_rows,
        "",
        "Mean seconds per scene and stage:",
        "",
        "| OpenMP wait, torch threads | configuration | " + " | ".join(STAGES)
        + " | total s | peak RSS MiB | load before |",
        "|---|---|" + "---|" * (len(STAGES) + 3),
        *stage_rows,
        "",
        "## 2. Maps of test rooms side by side",
        "",
        f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}, {args.threads} torch "
        "threads. Seconds per stage, summed over tiles; voxels are counted in every tile that "
        "reads them (margins twice). Goal: 3M points within 6 GB (6144 MiB) peak RSS on CPU.",
        "",
        "| points | configuration | voxels | foreground | tiles | instances | " + " | ".join(STAGES)
        + " | total s | peak RSS MiB | reference / ours |",
        "|---|---|---|---|---|---|" + "---|" * (len(STAGES) + 3),
        *map_rows,
        "",
        *bound_section(first[0], first[1], bound, args.threads),
    ]
    path = write_results("pipeline", "Pipeline: stages, memory, speed-up over the reference", "\n".join(body),
                         f"_tile{args.tile_size:g}" if args.tile_size else "")
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
