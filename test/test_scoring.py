"""Semantic scores of ``ssen_ros.scoring`` on hand-worked confusion matrices."""
import math

import numpy as np
import pytest

from ssen_ros.scoring import class_iou, semantic_miou


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
