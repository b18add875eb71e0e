"""Rotation matrices about the map's axes, shared by inference (rotation averaging, paper
Table II) and training (augmentations, paper §IV)."""
from __future__ import annotations

import numpy as np


def rotation_z(angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about z (up), counter-clockwise seen from above."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_x(angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` radians about x: a tilt of the map."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
