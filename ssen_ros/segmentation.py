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
