"""Training augmentations: those of paper §IV (colour jitter, scaling, rotation about z, a small
tilt), and the changes real maps show against our rooms: camera colour shifts, maps without
colour, density and sensor noise."""
from __future__ import annotations

import numpy as np

from ssen_ros.config import AugmentConfig
from ssen_ros.rotations import rotation_x, rotation_z

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""ITU-R BT.601 luma weights: the grey a camera's monochrome channel sees."""


def shift_colors(features: np.ndarray, gamma: float, gain: np.ndarray) -> np.ndarray:
    """A camera's exposure and white balance: colour c in [0, 1] becomes clip(gain * c^gamma),
    per channel; ``features`` are colours in [-0.5, 0.5] (RGB/255 - 0.5)."""
    colors = np.clip(features + 0.5, 0.0, 1.0) ** gamma * gain
    return (np.clip(colors, 0.0, 1.0) - 0.5).astype(np.float32)


def grey_colors(features: np.ndarray) -> np.ndarray:
    """Each colour replaced by its luma, in all three channels."""
    return np.repeat(features @ LUMA[:, None], 3, axis=1).astype(np.float32)


def density_keep(n: int, rng: np.random.Generator, min_density: float) -> "np.ndarray | slice":
    """Rows of a random subset of the points, its share drawn log-uniform in [min_density, 1]."""
    if min_density >= 1.0:
        return slice(None)
    share = float(np.exp(rng.uniform(np.log(min_density), 0.0)))
    return np.flatnonzero(rng.random(n) < share)


def augment(points: np.ndarray, features: np.ndarray, rng: np.random.Generator,
            config: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Randomly transform one scene: points (N,3) in metres, features (N,3) colours in [-0.5, 0.5].

    Paper §IV: Gaussian colour noise of std ``color_jitter_std``; scale uniform in
    [``scale_min``, ``scale_max``]; a free rotation about z; a rotation about x, Gaussian with
    std ``tilt_std_deg`` clipped at ``tilt_max_deg``. Then, where the config asks: Gaussian
    position noise, a colour shift (gamma log-uniform in [1/``color_gamma``, ``color_gamma``],
    per-channel gain uniform in 1 +- ``color_gain``), and with probability ``color_grey`` grey
    colours or ``color_drop`` no colour (zeros, what a cloud without colour gets). Returns new arrays.
    """
    tilt = np.deg2rad(np.clip(rng.normal(0.0, config.tilt_std_deg), -config.tilt_max_deg, config.tilt_max_deg))
    yaw = rng.uniform(0.0, 2 * np.pi) if config.rotate_z else 0.0
    scale = rng.uniform(config.scale_min, config.scale_max)
    transform = scale * rotation_x(tilt) @ rotation_z(yaw)
    centre = points.mean(0) if len(points) else np.zeros(3)
    out_points = (points - centre) @ transform.T + centre
    if config.point_noise > 0:
        out_points = out_points + rng.normal(0.0, config.point_noise, out_points.shape)
    out_features = features + rng.normal(0.0, config.color_jitter_std, features.shape)
    if config.color_gamma > 1.0 or config.color_gain > 0.0:
        gamma = float(np.exp(rng.uniform(-1.0, 1.0) * np.log(config.color_gamma)))
        gain = rng.uniform(1.0 - config.color_gain, 1.0 + config.color_gain, 3)
        out_features = shift_colors(out_features, gamma, gain)
    draw = rng.random()
    if draw < config.color_drop:
        out_features = np.zeros_like(out_features)
    elif draw < config.color_drop + config.color_grey:
        out_features = grey_colors(out_features)
    return out_points.astype(points.dtype), out_features.astype(features.dtype)
