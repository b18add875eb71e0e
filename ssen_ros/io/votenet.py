"""ScanNet scenes in the layout VoteNet's preprocessing writes (``scannet/batch_load_scannet_data.py``
of facebookresearch/votenet): three arrays per scene in one folder.

- ``{scene}_vert.npy``: (N, 6) float32, x y z r g b, colours 0-255, already axis-aligned;
- ``{scene}_sem_label.npy``: (N,) nyu40 ids (0: unannotated);
- ``{scene}_ins_label.npy``: (N,) instance ids, ``objectId + 1`` (0: none).

The vertices may be a random subset of the mesh's (VoteNet keeps at most 50,000). Labels map
to train ids as in :mod:`ssen_ros.io.scannet`; instances of wall, floor and unlabelled points
become -1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ssen_ros.classes import BACKGROUND_CLASSES, IGNORE_LABEL, class_ids, nyu40_to_train
from ssen_ros.io.cloud import Cloud, CloudFormatError
from ssen_ros.io.scannet import ScanNetScene

VERT_SUFFIX = "_vert.npy"


def is_votenet_scene(path: "str | Path") -> bool:
    """True for a ``{scene}_vert.npy`` file."""
    return Path(path).name.endswith(VERT_SUFFIX) and Path(path).is_file()


def _load(path: Path, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise CloudFormatError(f"{path}: missing (a VoteNet scene needs _vert, _sem_label and _ins_label files)")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CloudFormatError(f"{path}: not a numpy array file ({err})") from None
    if array.ndim != ndim:
        raise CloudFormatError(f"{path}: expected a {ndim}-D array, got shape {array.shape}")
    return array


def read_votenet_scene(vert_path: "str | Path") -> ScanNetScene:
    """Read ``{scene}_vert.npy`` and its two label files beside it."""
    vert_path = Path(vert_path)
    name = vert_path.name[: -len(VERT_SUFFIX)]
    vert = _load(vert_path, 2)
    if vert.shape[1] < 6:
        raise CloudFormatError(f"{vert_path}: expected (N, 6) x y z r g b, got shape {vert.shape}")
    nyu40 = _load(vert_path.with_name(f"{name}_sem_label.npy"), 1)
    objects = _load(vert_path.with_name(f"{name}_ins_label.npy"), 1)
    if not len(nyu40) == len(objects) == len(vert):
        raise CloudFormatError(f"{vert_path}: {len(vert)} points but {len(nyu40)} semantic and "
                               f"{len(objects)} instance labels")
    points = np.ascontiguousarray(vert[:, :3], dtype=np.float32)
    colors = np.clip(np.rint(vert[:, 3:6]), 0, 255).astype(np.uint8)
    semantic = nyu40_to_train(nyu40.astype(np.int64))
    instance = np.where(objects > 0, objects.astype(np.int64) - 1, -1)
    instance[(semantic == IGNORE_LABEL) | np.isin(semantic, class_ids(BACKGROUND_CLASSES))] = -1
    return ScanNetScene(name, Cloud(points, colors), np.zeros((0, 3), np.int64), semantic, instance)
