"""Training augmentations of paper §IV: colour jitter, scaling, rotation about z and a small tilt."""
from __future__ import annotations

import numpy as np

from ssen_ros.config import AugmentConfig


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def augment(points: np.ndarray, features: np.ndarray, rng: np.random.Generator,
            config: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Randomly transform one scene: points (N,3) in metres, features (N,F) colours in [-0.5, 0.5].

    Jitter: Gaussian colour noise of std ``color_jitter_std``; scale: uniform in
    [``scale_min``, ``scale_max``]; a free rotation about z; a rotation about x, Gaussian with
    std ``tilt_std_deg`` clipped at ``tilt_max_deg``. Returns new arrays.
    """
    tilt = np.deg2rad(np.clip(rng.normal(0.0, config.tilt_std_deg), -config.tilt_max_deg, config.tilt_max_deg))
    yaw = rng.uniform(0.0, 2 * np.pi) if config.rotate_z else 0.0
    scale = rng.uniform(config.scale_min, config.scale_max)
    transform = scale * rotation_x(tilt) @ rotation_z(yaw)
    centre = points.mean(0) if len(points) else np.zeros(3)
    out_points = (points - centre) @ transform.T + centre
    out_features = features + rng.normal(0.0, config.color_jitter_std, features.shape)
    return out_points.astype(points.dtype), out_features.astype(features.dtype)
