"""The pipeline's result for one cloud: per-point labels and the instance records.

Its own module so that the segmenter and the tiling that stitches tile results both build it
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssen_ros.instances import Instance


@dataclass
class Segmentation:
    """Per-point labels (-1: background, noise or outside the crop) and the instance records."""

    semantic: np.ndarray
    instance: np.ndarray
    instances: list[Instance]
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage, plus 'total'."""
    num_voxels: int = 0
    num_foreground_voxels: int = 0
    num_tiles: int = 1
    """Tiles the cloud was segmented in (``ssen_ros.tiling``); voxel counts are summed over them."""
    num_beyond_limit: int = 0
    """Finite points dropped for lying beyond ``coordinate_limit`` (labelled -1)."""


def label_points_by_instance(semantic: np.ndarray, instance: np.ndarray, instances: list[Instance]) -> None:
    """Every point of an instance takes the instance's class, in place; other points keep theirs.

    A cluster's label is the semantic network's (paper §III), by the majority vote of its voxels
    (``ssen_ros.instances``): this makes the per-point labels say the same, so the labelled cloud
    agrees with the object list and a cluster's stray votes for other classes do not remain."""
    if not instances:
        return
    ids = np.array([r.id for r in instances], dtype=np.int64)
    lut = np.full(int(ids.max()) + 2, -1, dtype=semantic.dtype)  # lut[0]: points in no instance
    lut[ids + 1] = [r.class_id for r in instances]
    np.copyto(semantic, lut[instance + 1], where=instance >= 0)
