"""Score a segmenter on labelled scenes: semantic mIoU and the ScanNet instance AP (ScanNet's
``BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py``).

Used by training's periodic validation, ``ssen evaluate --weights`` and the benchmarks, so that
every number the project reports comes from the same path: the whole pipeline on each scene,
then :mod:`ssen_ros.evaluate` on its instances.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ssen_ros.classes import CLASS_NAMES, IGNORE_LABEL, NUM_CLASSES
from ssen_ros.data.dataset import Scene, load_scene
from ssen_ros.evaluate import Prediction, Result, evaluate_scenes
from ssen_ros.segmentation import Segmentation
from ssen_ros.segmenter import Segmenter


@dataclass
class Scores:
    instance: Result
    seconds_per_scene: float
    confusion: np.ndarray
    """Labelled points per true class (rows) and predicted class (columns)."""

    @property
    def miou(self) -> float:
        """Mean over classes present in the ground truth of per-class IoU (points, 20 classes)."""
        return semantic_miou(self.confusion)

    @property
    def class_iou(self) -> np.ndarray:
        """Per-class IoU (NaN for classes absent from the ground truth)."""
        return class_iou(self.confusion)

    def summary(self) -> dict[str, float]:
        return {"mIoU": self.miou, "AP": self.instance.mean_ap, "AP50": self.instance.ap50,
                "AP25": self.instance.ap25, "seconds_per_scene": self.seconds_per_scene}

    def row(self, name: str) -> str:
        """One row of a markdown table under :func:`table_header`."""
        s = self.summary()
        return (f"| {name} | {s['mIoU']:.3f} | {s['AP']:.3f} | {s['AP50']:.3f} | {s['AP25']:.3f} "
                f"| {s['seconds_per_scene']:.2f} |")

    def class_iou_line(self) -> str:
        """``name IoU`` for each class present in the ground truth."""
        return ", ".join(f"{name} {iou:.2f}" for name, iou in zip(CLASS_NAMES, self.class_iou)
                         if not np.isnan(iou))

    def confusion_table(self, top: int = 3) -> str:
        """A markdown table: per true class, its share of the labelled points, the share predicted
        as it, and the ``top`` classes its points were predicted as, with their shares."""
        total = max(int(self.confusion.sum()), 1)
        lines = ["| true class | share of points | share predicted as it | its points predicted as |",
                 "|---|---|---|---|"]
        for c in np.flatnonzero(self.confusion.sum(1)):
            row = self.confusion[c]
            picks = [k for k in np.argsort(-row, kind="stable")[:top] if row[k]]
            went = ", ".join(f"{CLASS_NAMES[k]} {100 * row[k] / row.sum():.0f} %" for k in picks)
            lines.append(f"| {CLASS_NAMES[c]} | {100 * row.sum() / total:.1f} % | "
                         f"{100 * self.confusion[:, c].sum() / total:.1f} % | {went} |")
        return "\n".join(lines)


def table_header(first: str, extra: Sequence[str] = ()) -> str:
    """Header of a markdown table of :meth:`Scores.row` rows, with ``extra`` columns after them."""
    columns = [first, "mIoU", "AP", "AP50", "AP25", "s / scene", *extra]
    return "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"


def predictions(result: Segmentation) -> list[Prediction]:
    """The instances of a segmentation as benchmark predictions (masks over input points)."""
    return [Prediction(result.instance == inst.id, inst.class_id, inst.score) for inst in result.instances]


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class (rows of ``confusion`` are the truth); NaN where it has no ground truth."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return np.where(confusion.sum(1) > 0, tp / np.maximum(union, 1), np.nan)


def semantic_miou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes that occur in the ground truth (rows of ``confusion``)."""
    iou = class_iou(confusion)
    return float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan")


def score_scenes(segmenter: Segmenter, scene_folders: Sequence[Path],
                 perturb: Optional[Callable[[Scene], Scene]] = None) -> Scores:
    """Segment every scene and score it against its labels; ``perturb`` changes each scene
    (colours, density, pose; ``ssen_ros.data.perturb.Perturbation``) before it is segmented."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    scenes = []
    elapsed = 0.0
    for folder in scene_folders:
        scene = load_scene(folder)
        if perturb is not None:
            scene = perturb(scene)
        t0 = time.perf_counter()
        result = segmenter(scene.points, scene.colors)
        elapsed += time.perf_counter() - t0
        valid = (scene.semantic != IGNORE_LABEL) & (result.semantic >= 0)
        confusion += np.bincount(scene.semantic[valid] * NUM_CLASSES + result.semantic[valid],
                                 minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
        scenes.append((scene.semantic, scene.instance, predictions(result)))
    return Scores(evaluate_scenes(scenes), elapsed / max(1, len(scene_folders)), confusion)
