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

    def point_scores(self) -> np.ndarray:
        """Each point's instance score (0 where it is in no instance)."""
        ids = np.array([inst.id for inst in self.instances], dtype=np.int64)
        table = np.zeros(int(max(ids.max(initial=-1), self.instance.max(initial=-1))) + 2, dtype=np.float32)
        table[ids + 1] = [inst.score for inst in self.instances]
        return table[self.instance + 1]  # index 0 holds the -1 points
