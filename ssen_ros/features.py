"""The networks' input features per point, shared by inference and training.

Colour is RGB/255 - 0.5, as the authors' code (96lives/ssen, HEAD ec4006e); a cloud without
colour gets zeros, the grey in the middle of that range. The paper's §IV adds the 3D
coordinates (f = 6); we also offer the height above the floor alone (f = 4), which, unlike
coordinates centred on the cloud, does not change with the map's extent, a crop or a tile.
``ModelSpec.in_channels`` says which a weights file wants.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

INPUT_CHANNELS: dict[int, tuple[str, ...]] = {
    3: ("red", "green", "blue"),
    4: ("red", "green", "blue", "height"),
    6: ("red", "green", "blue", "x", "y", "z"),
}
"""Input channels of the networks by their count; weights trained on one set start training on
another by these names (``checkpoint.load_init``)."""

FLOOR_PERCENTILE = 2.0
"""The floor is taken at this percentile of the points' z: in a room map the floor holds far more
than this share of the points, and stray points below it far fewer."""


NO_COLOUR = ("no colour fields: segmented on geometry alone, which costs accuracy "
             "(README, 'Results': the rows without colour)")
"""The one line the CLI and the node log for a cloud without colour."""


class FeatureError(ValueError):
    """The networks' input channels are not a supported set."""


def colors_to_features(colors: Optional[np.ndarray], n: int) -> np.ndarray:
    """Colour input features: RGB/255 - 0.5; zeros (mid grey) where a cloud has no colour."""
    if colors is None:
        return np.zeros((n, 3), dtype=np.float32)
    return (np.asarray(colors, dtype=np.float32) / 255.0 - 0.5).astype(np.float32)


def floor_height(points: np.ndarray) -> float:
    """The floor's z: the ``FLOOR_PERCENTILE`` percentile of the points' z (0 for no points)."""
    return float(np.percentile(points[:, 2], FLOOR_PERCENTILE)) if len(points) else 0.0


def with_coordinates(features: np.ndarray, points: np.ndarray, in_channels: int) -> np.ndarray:
    """Colour features plus the geometric channels ``in_channels`` asks for (``INPUT_CHANNELS``):
    none (3), the height above :func:`floor_height` (4), or the centred xyz in metres (6, paper §IV)."""
    if in_channels not in INPUT_CHANNELS:
        raise FeatureError(f"networks with {in_channels} input channels are not supported "
                           f"({', '.join(map(str, INPUT_CHANNELS))})")
    if in_channels == 3:
        return features
    if in_channels == 4:
        extra = (points[:, 2:3] - floor_height(points)) if len(points) else points[:, 2:3]
    else:
        extra = (points - points.mean(0)) if len(points) else points
    return np.concatenate([features, extra.astype(np.float32)], 1)
