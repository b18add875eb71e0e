"""The 20 ScanNet benchmark classes: names, nyu40 ids, background set, colours.

Sources: ScanNet's ``BenchmarkScripts/3d_evaluation/evaluate_semantic_instance.py`` for the
benchmark's classes; the authors' code (96lives/ssen at ec4006e) for the 20 train ids.

Everything in the project speaks in *train ids* 0..19 (the index into ``CLASS_NAMES``);
``-1`` / ``IGNORE_LABEL`` marks unlabelled points. nyu40 ids appear only at the
ScanNet file boundary (labels tsv, benchmark submission files).
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "desk", "curtain", "refrigerator",
    "shower curtain", "toilet", "sink", "bathtub", "otherfurniture",
)
"""Train id -> name, in the order of ScanNet's ``VALID_CLASS_IDS``."""

NYU40_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
"""Train id -> nyu40 id (the 20 valid ids of the ScanNet semantic benchmark)."""

NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = -1

BACKGROUND_CLASSES: tuple[str, ...] = ("wall", "floor")
"""Classes that are not instances: the embedding network never sees them (paper §III)."""

INSTANCE_NYU40_IDS: tuple[int, ...] = tuple(i for i in NYU40_IDS if i not in (1, 2))
"""The 18 classes of the ScanNet instance benchmark (``VALID_CLASS_IDS`` of the benchmark script)."""

# ScanNet's own visualisation palette (util.py create_color_palette) for the 20 classes.
CLASS_COLORS = np.array([
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
    (196, 156, 148), (23, 190, 207), (247, 182, 210), (219, 219, 141), (255, 127, 14),
    (158, 218, 229), (44, 160, 44), (112, 128, 144), (227, 119, 194), (82, 84, 163),
], dtype=np.uint8)

_NYU40_TO_TRAIN = np.full(41, IGNORE_LABEL, dtype=np.int64)
_NYU40_TO_TRAIN[list(NYU40_IDS)] = np.arange(NUM_CLASSES)


def nyu40_to_train(nyu40: np.ndarray) -> np.ndarray:
    """Map nyu40 ids (0..40) to train ids 0..19; every other id becomes ``IGNORE_LABEL``."""
    nyu40 = np.asarray(nyu40, dtype=np.int64)
    out = np.full(nyu40.shape, IGNORE_LABEL, dtype=np.int64)
    valid = (nyu40 >= 0) & (nyu40 <= 40)
    out[valid] = _NYU40_TO_TRAIN[nyu40[valid]]
    return out


def train_to_nyu40(train: np.ndarray) -> np.ndarray:
    """Map train ids 0..19 to nyu40 ids; ``IGNORE_LABEL`` becomes 0 (unannotated)."""
    train = np.asarray(train, dtype=np.int64)
    table = np.asarray(NYU40_IDS, dtype=np.int64)
    return np.where(train >= 0, table[np.clip(train, 0, NUM_CLASSES - 1)], 0)


def class_ids(names: "list[str] | tuple[str, ...]") -> list[int]:
    """Train ids of class names; raises ``ValueError`` naming any unknown name."""
    unknown = [n for n in names if n not in CLASS_NAMES]
    if unknown:
        raise ValueError(f"unknown class name(s) {unknown}; known: {list(CLASS_NAMES)}")
    return [CLASS_NAMES.index(n) for n in names]
