"""Fixed changes of a labelled scene, as real maps differ from our rooms: no colour, grey, a
camera colour shift, lower density, position noise, a tilt, far from the origin.

``python -m benchmarks robustness`` scores the test rooms under each; ``python -m benchmarks real``
without colour.
Each scene draws its own random values from the seed and its name, so a run repeats.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from ssen_ros.data.augment import grey_colors, shift_colors
from ssen_ros.data.dataset import Scene
from ssen_ros.rotations import rotation_x

COLOR_CHOICES = ("keep", "none", "grey", "shift")


@dataclass(frozen=True)
class Perturbation:
    """A change applied to every scene: ``Perturbation(colors='none')(scene) -> scene``."""

    colors: str = "keep"
    """'keep'; 'none' (no colour, as a LiDAR map); 'grey' (luma); 'shift' (gamma uniform in
    [0.6, 1.5], per-channel gain uniform in [0.7, 1.2], one draw per scene)."""
    keep_fraction: float = 1.0
    """Share of the points kept, drawn at random."""
    noise: float = 0.0
    """Std of Gaussian position noise, metres."""
    tilt_deg: float = 0.0
    """Rotation about x, degrees, about the scene's centre."""
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Metres the scene is moved by in x, y and z."""
    seed: int = 0

    def __call__(self, scene: Scene) -> Scene:
        if self.colors not in COLOR_CHOICES:
            raise ValueError(f"colors must be one of {COLOR_CHOICES}, got {self.colors!r}")
        rng = np.random.default_rng([self.seed, zlib.crc32(scene.name.encode())])
        keep = (np.flatnonzero(rng.random(len(scene.points)) < self.keep_fraction)
                if self.keep_fraction < 1.0 else slice(None))
        points = scene.points[keep].astype(np.float64)
        colors = None if scene.colors is None else scene.colors[keep]
        if self.noise > 0:
            points += rng.normal(0.0, self.noise, points.shape)
        if self.tilt_deg:
            centre = points.mean(0)
            points = (points - centre) @ rotation_x(np.deg2rad(self.tilt_deg)).T + centre
        points += self.offset
        if colors is not None and self.colors != "keep":
            features = colors.astype(np.float32) / 255.0 - 0.5
            if self.colors == "none":
                colors = None
            elif self.colors == "grey":
                colors = _to_uint8(grey_colors(features))
            else:
                colors = _to_uint8(shift_colors(features, rng.uniform(0.6, 1.5), rng.uniform(0.7, 1.2, 3)))
        return replace(scene, points=points.astype(np.float32), colors=colors,
                       semantic=scene.semantic[keep], instance=scene.instance[keep])


def _to_uint8(features: np.ndarray) -> np.ndarray:
    return np.clip(np.rint((features + 0.5) * 255.0), 0, 255).astype(np.uint8)
