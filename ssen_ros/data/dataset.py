"""Training samples from a folder of ScanNet-format scenes: cache, crop, augment, voxelize, batch.

Each scene folder is read once with :func:`ssen_ros.io.scannet.read_scannet_scene` and cached as
a compressed ``.npz`` beside its files, so training never waits on PLY parsing or the generator.
Scenes in VoteNet's layout (``{scene}_vert.npy`` + label arrays, :mod:`ssen_ros.io.votenet`) are
read as they are; they serve measurement only.
A voxel takes the labels of one of its points (the first), as MinkowskiEngine's quantisation does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ssen_ros.config import AugmentConfig
from ssen_ros.data.augment import augment, density_keep
from ssen_ros.io.scannet import read_scannet_scene
from ssen_ros.io.votenet import VERT_SUFFIX, is_votenet_scene, read_votenet_scene
from ssen_ros.features import colors_to_features, with_coordinates
from ssen_ros.voxel import voxelize

CACHE_NAME = "ssen_cache.npz"


class DatasetError(ValueError):
    """A dataset folder is unusable; the message names it."""


@dataclass
class Scene:
    """One labelled scene in memory: points (N,3) float32, colors (N,3) uint8 or None, labels (N,)."""

    name: str
    points: np.ndarray
    colors: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


@dataclass
class Sample:
    """One voxelized training sample (int32 coords (M,3), float32 features, int64 labels)."""

    coords: np.ndarray
    features: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


def find_scenes(folder: "str | Path") -> list[Path]:
    """Scenes under ``folder``, sorted by name: ScanNet scene folders (those holding a
    ``*_vh_clean_2.ply``) and VoteNet scenes (their ``*_vert.npy`` files)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    scenes = {p.parent for p in folder.rglob("*_vh_clean_2.ply")} | set(folder.rglob(f"*{VERT_SUFFIX}"))
    if not scenes:
        raise DatasetError(f"dataset folder {folder} holds no ScanNet scenes "
                           f"(no *_vh_clean_2.ply, no *{VERT_SUFFIX})")
    return sorted(scenes, key=lambda p: (p.name, str(p)))


def load_scene(folder: Path) -> Scene:
    """Read a labelled scene: a scene folder through its npz cache, or a VoteNet ``_vert.npy``."""
    if is_votenet_scene(folder):
        scene = read_votenet_scene(folder)
        return Scene(scene.name, scene.cloud.points, scene.cloud.colors, scene.semantic, scene.instance)
    cache = folder / CACHE_NAME
    if cache.is_file() and cache.stat().st_mtime >= max(p.stat().st_mtime for p in folder.iterdir()
                                                          if not p.name.startswith(CACHE_NAME)):
        with np.load(cache) as z:
            return Scene(folder.name, z["points"], z["colors"], z["semantic"], z["instance"])
    scene = read_scannet_scene(folder)
    if scene.semantic is None:
        raise DatasetError(f"scene {folder} has no labels (no aggregation/segments files)")
    colors = scene.cloud.colors if scene.cloud.colors is not None else np.full((len(scene.cloud), 3), 128, np.uint8)
    out = Scene(folder.name, scene.cloud.points.astype(np.float32), colors, scene.semantic, scene.instance)
    # Written whole under a name of this process's and then renamed, so that another process
    # loading the same scene (a rank of a multi-process run) never reads half a cache; a
    # folder we cannot write to is read without one.
    partial = cache.with_name(f"{CACHE_NAME}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as f:
            np.savez_compressed(f, points=out.points, colors=out.colors, semantic=out.semantic,
                                instance=out.instance)
        os.replace(partial, cache)
    except OSError:
        partial.unlink(missing_ok=True)
    return out


def first_point_of_voxel(inverse: np.ndarray, num_voxels: int) -> np.ndarray:
    """Index of one point (the first) in each voxel."""
    first = np.empty(num_voxels, dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(inverse))[::-1]
    return first


def make_sample(scene: Scene, voxel_size: float, rng: Optional[np.random.Generator] = None,
                crop_size: float = 0.0, augment_config: Optional[AugmentConfig] = None,
                in_channels: int = 3) -> Sample:
    """Crop (a random square of ``crop_size`` m in xy), augment, and voxelize one scene;
    ``in_channels`` picks the geometric features (``ssen_ros.features``)."""
    points, features = scene.points, colors_to_features(scene.colors, len(scene.points))
    semantic, instance = scene.semantic, scene.instance
    if crop_size and rng is not None:
        lo, hi = points[:, :2].min(0), points[:, :2].max(0)
        corner = rng.uniform(lo, np.maximum(lo, hi - crop_size))
        keep = ((points[:, :2] >= corner) & (points[:, :2] < corner + crop_size)).all(1)
        points, features, semantic, instance = points[keep], features[keep], semantic[keep], instance[keep]
    if augment_config is not None and rng is not None:
        keep = density_keep(len(points), rng, augment_config.min_density)
        points, features, semantic, instance = points[keep], features[keep], semantic[keep], instance[keep]
        points, features = augment(points, features, rng, augment_config)
    vox = voxelize(points, with_coordinates(features, points, in_channels), voxel_size)
    first = first_point_of_voxel(vox.inverse, len(vox))
    return Sample(vox.coords, vox.features.astype(np.float32), semantic[first], instance[first])


def collate(samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Batch samples: coords (M,4) int32 with the batch index first, and concatenated rows."""
    coords = [np.concatenate([np.full((len(s.coords), 1), b, dtype=np.int32), s.coords], 1)
              for b, s in enumerate(samples)]
    return {"coords": torch.from_numpy(np.concatenate(coords)),
            "features": torch.from_numpy(np.concatenate([s.features for s in samples])),
            "semantic": torch.from_numpy(np.concatenate([s.semantic for s in samples]).astype(np.int64)),
            "instance": torch.from_numpy(np.concatenate([s.instance for s in samples]).astype(np.int64)),
            "batch": torch.from_numpy(np.concatenate([np.full(len(s.coords), b) for b, s in enumerate(samples)]))}
