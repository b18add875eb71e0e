"""Semantic scores of ``ssen_ros.scoring`` on hand-worked confusion matrices."""
import math

import numpy as np
import pytest

from ssen_ros.classes import CLASS_NAMES, NUM_CLASSES
from ssen_ros.scoring import Scores, class_iou, semantic_miou


def test_semantic_miou_by_hand():
    # Rows are the truth. Class 0: 3 right, 1 called class 1, and 1 point of class 1 called 0:
    # IoU 3 / (3 + 1 + 1) = 0.6. Class 1: 4 right, 1 called 0, 1 of class 0 called 1: 4 / 6.
    # Class 2 has no ground truth, so it is left out of the mean.
    confusion = np.zeros((3, 3), dtype=np.int64)
    confusion[0] = [3, 1, 0]
    confusion[1] = [1, 4, 0]
    assert class_iou(confusion)[:2].tolist() == pytest.approx([0.6, 4 / 6])
    assert math.isnan(class_iou(confusion)[2])
    assert semantic_miou(confusion) == pytest.approx((0.6 + 4 / 6) / 2)
    confusion[1, 2] = 2  # class 2 predicted but never true: class 1's IoU falls, class 2 stays out
    assert semantic_miou(confusion) == pytest.approx((0.6 + 4 / 8) / 2)
    assert math.isnan(semantic_miou(np.zeros((3, 3), dtype=np.int64)))


def test_confusion_table_by_hand():
    # 20 labelled points: 10 wall (6 called wall, 3 cabinet, 1 door) and 10 bed (all called
    # cabinet). Wall holds 50 % of the points and 30 % are called wall; no point is called bed.
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    wall, cabinet, bed, door = (CLASS_NAMES.index(c) for c in ("wall", "cabinet", "bed", "door"))
    confusion[wall, [wall, cabinet, door]] = [6, 3, 1]
    confusion[bed, cabinet] = 10
    scores = Scores(None, 0.0, confusion)
    rows = scores.confusion_table(top=2).splitlines()[2:]
    assert rows == ["| wall | 50.0 % | 30.0 % | wall 60 %, cabinet 30 % |",
                    "| bed | 50.0 % | 0.0 % | cabinet 100 % |"]
    assert scores.class_iou[wall] == pytest.approx(6 / 10)
    assert scores.miou == pytest.approx((6 / 10 + 0) / 2)  # bed: no point called bed
