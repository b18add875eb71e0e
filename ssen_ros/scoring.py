"""Score a segmenter on labelled scenes: semantic mIoU and the ScanNet instance AP (FACTS §3).

Used by training's periodic validation, ``ssen evaluate --weights`` and the benchmarks, so that
every number the project reports comes from the same path: the whole pipeline on each scene,
then :mod:`ssen_ros.evaluate` on its instances.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ssen_ros.classes import IGNORE_LABEL, NUM_CLASSES
from ssen_ros.data.dataset import load_scene
from ssen_ros.evaluate import Prediction, Result, evaluate_scenes
from ssen_ros.segmenter import Segmentation, Segmenter


@dataclass
class Scores:
    miou: float
    """Mean over classes present in the ground truth of per-class IoU (points, 20 classes)."""
    instance: Result
    seconds_per_scene: float

    def summary(self) -> dict[str, float]:
        return {"mIoU": self.miou, "AP": self.instance.mean_ap, "AP50": self.instance.ap50,
                "AP25": self.instance.ap25, "seconds_per_scene": self.seconds_per_scene}


def predictions(result: Segmentation) -> list[Prediction]:
    """The instances of a segmentation as benchmark predictions (masks over input points)."""
    return [Prediction(result.instance == inst.id, inst.class_id, inst.score) for inst in result.instances]


def semantic_miou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes that occur in the ground truth (rows of ``confusion``)."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = confusion.sum(1) > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else float("nan")


def score_scenes(segmenter: Segmenter, scene_folders: Sequence[Path]) -> Scores:
    """Segment every scene and score it against its labels."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    scenes = []
    elapsed = 0.0
    for folder in scene_folders:
        scene = load_scene(folder)
        t0 = time.perf_counter()
        result = segmenter(scene.points, scene.colors)
        elapsed += time.perf_counter() - t0
        valid = (scene.semantic != IGNORE_LABEL) & (result.semantic >= 0)
        confusion += np.bincount(scene.semantic[valid] * NUM_CLASSES + result.semantic[valid],
                                 minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
        scenes.append((scene.semantic, scene.instance, predictions(result)))
    return Scores(semantic_miou(confusion), evaluate_scenes(scenes), elapsed / max(1, len(scene_folders)))
