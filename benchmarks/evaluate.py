"""``python -m benchmarks evaluate``: ScanNet instance AP over 100 generated rooms, in memory and via files.

Makes ``--rooms`` test-split rooms (timing the generator: seconds and points per room), then
builds ``--scenes`` scenes from them (cycling) with imperfect predictions per instance:
kept whole, cut to 60-95 %, split in two, merged with a neighbour, or replaced by a mostly
void blob, plus duplicates and false positives, with random scores. Times
``evaluate_scenes`` on all scenes and, for the file path, ``write_submission`` + ``ssen
evaluate``'s reader. The issue's budget: 100 rooms under a minute on 2 cores.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from benchmarks import peak_rss_mb, write_results


def _predictions(semantic: np.ndarray, instance: np.ndarray, rng: np.random.Generator) -> list:
    from ssen_ros.evaluate import Prediction

    preds = []
    ids = np.unique(instance[instance >= 0])
    background = np.flatnonzero(instance < 0)
    for k, i in enumerate(ids):
        idx = np.flatnonzero(instance == i)
        label = int(semantic[idx[0]])
        roll = rng.random()
        if roll < 0.4:
            parts = [idx]
        elif roll < 0.6:
            parts = [idx[rng.random(len(idx)) < rng.uniform(0.6, 0.95)]]
        elif roll < 0.75:
            cut = rng.random(len(idx)) < 0.5
            parts = [idx[cut], idx[~cut]]
        elif roll < 0.9 and k + 1 < len(ids):
            parts = [np.concatenate([idx, np.flatnonzero(instance == ids[k + 1])])]
        else:
            parts = [np.concatenate([idx[: len(idx) // 4], rng.choice(background, len(idx), replace=False)])
                     if len(background) >= len(idx) else idx]
        for p in parts:
            mask = np.zeros(len(instance), bool)
            mask[p] = True
            preds.append(Prediction(mask, label, float(rng.random())))
            if rng.random() < 0.1:   # a duplicate
                preds.append(Prediction(mask.copy(), label, float(rng.random())))
    return preds


def main(argv: "list[str] | None" = None) -> int:
    from ssen_ros.synthetic.generate import generate_scene, split_seeds
    from ssen_ros.evaluate import evaluate_folders, evaluate_scenes, gt_ids, write_submission

    parser = argparse.ArgumentParser(prog="python -m benchmarks evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10, help="distinct generated rooms")
    parser.add_argument("--scenes", type=int, default=100, help="scenes evaluated (rooms cycled)")
    args = parser.parse_args(argv)

    rooms, gen_times = [], []
    for seed in split_seeds("test", args.rooms):
        t0 = time.perf_counter()
        g = generate_scene(seed)
        gen_times.append(time.perf_counter() - t0)
        rooms.append((g.room.room_type, g.scan.semantic, g.scan.instance))
    rng = np.random.default_rng(0)
    scenes = [(sem, ins, _predictions(sem, ins, rng))
              for _, sem, ins in (rooms[k % len(rooms)] for k in range(args.scenes))]
    points = np.array([len(s[0]) for s in scenes])
    n_pred = sum(len(s[2]) for s in scenes)

    t0 = time.perf_counter()
    result = evaluate_scenes(scenes)
    t_mem = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        gt = {}
        for k, (sem, ins, preds) in enumerate(scenes):
            write_submission(tmp, f"scene{k:04d}_00", preds)
            gt[f"scene{k:04d}_00"] = gt_ids(sem, ins)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        from_files = evaluate_folders(tmp, gt)
        t_files = time.perf_counter() - t0
    same = np.array_equal(np.nan_to_num(result.ap, nan=-1), np.nan_to_num(from_files.ap, nan=-1))

    pts_rooms = [len(r[1]) for r in rooms]
    body = f"""## Generator ({args.rooms} test-split rooms, spacing 2 cm, 12 viewpoints)

| | min | median | max |
| --- | --- | --- | --- |
| seconds per room (layout + scan, mesh cache warming up) | {min(gen_times):.1f} | {np.median(gen_times):.1f} | {max(gen_times):.1f} |
| points per room | {min(pts_rooms):,} | {int(np.median(pts_rooms)):,} | {max(pts_rooms):,} |

Room types: {', '.join(r[0] for r in rooms)}.

## Evaluation ({args.scenes} scenes, {points.sum():,} points, {n_pred:,} predictions)

| path | seconds |
| --- | --- |
| `evaluate_scenes` (in memory) | {t_mem:.2f} |
| `write_submission` (official format, all scenes) | {t_write:.2f} |
| `evaluate_folders` (read masks + evaluate) | {t_files:.2f} |

Both paths give the same AP table: {same}. AP {result.mean_ap:.3f}, AP50 {result.ap50:.3f},
AP25 {result.ap25:.3f} on these synthetic imperfect predictions (not a model's score).
Peak RSS {peak_rss_mb():.0f} MiB. Budget: 100 rooms under 60 s.
"""
    path = write_results("evaluate", "ScanNet instance benchmark speed on generated rooms", body)
    print(body)
    print(f"wrote {path}")
    return 0 if same else 1
