"""PNG pictures of point clouds coloured by RGB, class or instance, with optional text labels.

Two views side by side: top-down (looking along -z) and oblique (a camera raised 35° and
turned 30° about z). Both are orthographic projections drawn with matplotlib's Agg backend as
one scatter per view, points sorted far-to-near so that nearer points paint over farther ones
(a painter's z-buffer; cheaper and sharper than mplot3d for 10^5 points). Used by
``ssen generate --preview`` and ``ssen segment``; implements no paper equation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ssen_ros.classes import CLASS_COLORS, CLASS_NAMES
from ssen_ros.rotations import rotation_z

VIEWS = ("top", "oblique")

_GREY = np.array([190, 190, 190], np.uint8)


def instance_colors(instance: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 3) uint8 distinct colours per instance id; ids < 0 (background) are light grey."""
    instance = np.asarray(instance, dtype=np.int64)
    ids = np.unique(instance[instance >= 0])
    rng = np.random.default_rng(seed)
    # Evenly spaced hues, shuffled, with alternating lightness: neighbours stay distinguishable.
    hues = rng.permutation(len(ids)) / max(len(ids), 1)
    lightness = np.where(np.arange(len(ids)) % 2 == 0, 0.45, 0.62)
    palette = _hls_to_rgb(hues, lightness, np.full(len(ids), 0.75))
    out = np.tile(_GREY, (len(instance), 1))
    if len(ids):
        where = instance >= 0
        out[where] = palette[np.searchsorted(ids, instance[where])]
    return out


def class_colors(semantic: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 ScanNet palette colours per train id; ids outside 0..19 are grey."""
    semantic = np.asarray(semantic, dtype=np.int64)
    valid = (semantic >= 0) & (semantic < len(CLASS_NAMES))
    out = np.tile(_GREY, (len(semantic), 1))
    out[valid] = CLASS_COLORS[semantic[valid]]
    return out


def _hls_to_rgb(h: np.ndarray, l: np.ndarray, s: np.ndarray) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    v = l + s * np.minimum(l, 1 - l)
    sv = np.where(v > 0, 2 * (1 - l / np.maximum(v, 1e-9)), 0)
    return (hsv_to_rgb(np.stack([h, sv, v], axis=1)) * 255 + 0.5).astype(np.uint8)


def toward_camera(view: str) -> np.ndarray:
    """Unit vector from the scene towards the camera of ``view`` (world frame)."""
    return _view_matrix(view)[2]


def _view_matrix(view: str) -> np.ndarray:
    """Rows: screen x, screen y, depth (larger = nearer the camera)."""
    if view == "top":
        return np.eye(3)
    if view == "oblique":
        yaw, pitch = np.radians(-30.0), np.radians(35.0)
        # Camera looking from -y (south), raised by `pitch`: screen up mixes z and y.
        rx = np.array([[1, 0, 0],
                       [0, np.sin(pitch), np.cos(pitch)],
                       [0, -np.cos(pitch), np.sin(pitch)]])
        return rx @ rotation_z(yaw)
    raise ValueError(f"unknown view {view!r}; choose from {VIEWS}")


def render_instances(points: np.ndarray, colors_or_labels: np.ndarray, path: "Path | str", *,
                     labels_text: Sequence[tuple[Sequence[float], str]] = (),
                     title: str | None = None, views: Sequence[str] = VIEWS,
                     max_points: int = 250_000, point_size: float | None = None,
                     hidden: "dict[str, np.ndarray] | None" = None,
                     panel_inches: float = 6.0, dpi: int = 110, seed: int = 0) -> Path:
    """Write a PNG of ``points`` (N, 3) and return its path.

    ``colors_or_labels`` is either (N, 3) RGB (uint8 0..255 or float 0..1) or (N,) integer
    instance ids (coloured by ``instance_colors``; use ``class_colors`` for classes).
    ``labels_text`` puts text such as ``"chair 0.93"`` at 3-D positions in every view.
    ``hidden`` maps a view name to a boolean mask of points left out of that view (e.g. the
    walls between the oblique camera and the room, see ``toward_camera``). Clouds larger
    than ``max_points`` are subsampled (deterministically, by ``seed``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {points.shape}")
    values = np.asarray(colors_or_labels)
    if len(values) != len(points):
        raise ValueError(f"colors_or_labels has {len(values)} rows for {len(points)} points")
    if values.ndim == 1:
        rgb = instance_colors(values, seed) / 255.0
    elif values.ndim == 2 and values.shape[1] == 3:
        rgb = values / 255.0 if values.dtype.kind in "iu" else np.clip(values.astype(np.float64), 0, 1)
    else:
        raise ValueError(f"colors_or_labels must be (N,) ids or (N, 3) RGB, got shape {values.shape}")
    masks = {v: np.asarray(m, bool) for v, m in (hidden or {}).items()}
    for v, m in masks.items():
        if m.shape != (len(points),):
            raise ValueError(f"hidden[{v!r}] has shape {m.shape}, expected ({len(points)},)")
    if len(points) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        points, rgb = points[keep], rgb[keep]
        masks = {v: m[keep] for v, m in masks.items()}
    fig, axes = plt.subplots(1, len(views), figsize=(panel_inches * len(views), panel_inches),
                             dpi=dpi, squeeze=False)
    for ax, view in zip(axes[0], views):
        m = _view_matrix(view)
        shown = ~masks[view] if view in masks else np.ones(len(points), bool)
        proj = points[shown] @ m.T
        colors = rgb[shown]
        order = np.argsort(proj[:, 2], kind="stable")  # far first, near last
        if point_size is None:
            # Dots about twice the mean gap between projected points, so surfaces look solid.
            gap_px = panel_inches * dpi / np.sqrt(max(len(proj), 1))
            size = float(np.clip(2.2 * gap_px * 72 / dpi, 0.4, 6.0) ** 2)
        else:
            size = point_size
        ax.scatter(proj[order, 0], proj[order, 1], c=colors[order], s=size, marker="s",
                   linewidths=0, rasterized=True)
        for xyz, text in labels_text:
            p = np.asarray(xyz, dtype=np.float64) @ m.T
            ax.text(p[0], p[1], text, fontsize=7, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
        ax.set_aspect("equal")
        ax.set_title(view, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, facecolor="white")
    plt.close(fig)
    return path
