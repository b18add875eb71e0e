"""ScanNet v2 scene folders: read per-vertex labels as the ScanNet benchmark scripts do, and write them.

A scene folder ``{scene}/`` holds (ScanNet v2's release layout, as the authors' code reads it):

- ``{scene}_vh_clean_2.ply``: the mesh; its vertices are the points (x y z, red green blue alpha);
- ``{scene}_vh_clean_2.0.010000.segs.json``: ``segIndices``, the over-segment of each vertex;
- ``{scene}.aggregation.json``: ``segGroups``, objects made of segments, each with an
  ``objectId`` and a raw ``label``;
- ``scannetv2-labels.combined.tsv`` (in the folder or its parent): raw label -> ``nyu40id``.

As in ScanNet's ``export_train_mesh_for_evaluation.py``, every vertex of a segment of a group
takes the group's label (later groups overwrite earlier ones). Labels are then mapped
raw_category -> nyu40id -> train id (``ssen_ros.classes``; other ids -> -1). Instance ids
are the groups' ``objectId`` for the 18 instance classes of the benchmark and -1 for walls, floors and
unlabelled vertices. (ScanNet's evaluation files number instances ``objectId + 1``.)
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssen_ros.classes import BACKGROUND_CLASSES, CLASS_NAMES, IGNORE_LABEL, NYU40_IDS, class_ids, nyu40_to_train
from ssen_ros.io.cloud import Cloud, CloudFormatError
from ssen_ros.io.ply import read_ply_mesh, write_ply

LABELS_TSV = "scannetv2-labels.combined.tsv"
_TSV_COLUMNS = ("id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass",
                "nyu40class", "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55",
                "synsetoffset", "wnsynsetid", "wnsynsetkey", "mpcat40index", "mpcat40")
_BACKGROUND_IDS = np.array(class_ids(BACKGROUND_CLASSES))


@dataclass
class ScanNetScene:
    """One scene: its mesh vertices as a ``Cloud``, triangle ``faces`` (F, 3), and per-vertex
    ``semantic`` train ids and ``instance`` ids (int64 (N,), -1 for none; both None when the
    folder has no annotation files, as in the ScanNet test split)."""

    name: str
    cloud: Cloud
    faces: np.ndarray
    semantic: "np.ndarray | None"
    instance: "np.ndarray | None"


def scene_files(folder: Path, scene_name: str) -> "dict[str, Path]":
    """Paths of the mesh, segments and aggregation files of a scene."""
    return {"mesh": folder / f"{scene_name}_vh_clean_2.ply",
            "segments": folder / f"{scene_name}_vh_clean_2.0.010000.segs.json",
            "aggregation": folder / f"{scene_name}.aggregation.json"}


def read_label_map(path: "str | Path") -> "dict[str, int]":
    """raw_category -> nyu40id from a ScanNet labels tsv (rows without an nyu40id are skipped)."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"raw_category", "nyu40id"} - set(reader.fieldnames or ())
        if missing:
            raise CloudFormatError(f"{path}: no column(s) {sorted(missing)}; columns are {reader.fieldnames}")
        return {row["raw_category"]: int(row["nyu40id"]) for row in reader
                if (row["nyu40id"] or "").strip().isdigit()}


def _find_labels_tsv(folder: Path) -> Path:
    candidates = [folder / LABELS_TSV, folder.parent / LABELS_TSV]
    for path in candidates:
        if path.is_file():
            return path
    raise CloudFormatError(f"no {LABELS_TSV} in {candidates[0].parent} or {candidates[1].parent} "
                           "(it maps the aggregation's raw categories to nyu40 ids)")


def _load_json(path: Path, key: str):
    try:
        with open(path) as f:
            return json.load(f)[key]
    except json.JSONDecodeError as err:
        raise CloudFormatError(f"{path}: not valid JSON ({path.stat().st_size} bytes): {err}") from None
    except (KeyError, TypeError):
        raise CloudFormatError(f"{path}: no {key!r} entry") from None


def _read_mesh(folder: Path, files: "dict[str, Path]") -> "tuple[Cloud, np.ndarray]":
    if not files["mesh"].is_file():
        raise CloudFormatError(f"{folder}: no mesh {files['mesh'].name}")
    return read_ply_mesh(files["mesh"])


def read_scannet_cloud(folder: "str | Path") -> Cloud:
    """The points and colours of a ScanNet scene folder's mesh; its annotations are not read."""
    folder = Path(folder)
    return _read_mesh(folder, scene_files(folder, folder.name))[0]


def read_scannet_scene(folder: "str | Path", scene_name: "str | None" = None,
                       labels_tsv: "str | Path | None" = None) -> ScanNetScene:
    """Read a ScanNet scene folder; ``scene_name`` defaults to the folder's name."""
    folder = Path(folder)
    scene_name = scene_name or folder.name
    files = scene_files(folder, scene_name)
    cloud, faces = _read_mesh(folder, files)
    have = [files[k].is_file() for k in ("segments", "aggregation")]
    if not any(have):
        return ScanNetScene(scene_name, cloud, faces, None, None)
    if not all(have):
        absent = [files[k].name for k, h in zip(("segments", "aggregation"), have) if not h]
        raise CloudFormatError(f"{folder}: annotation file {absent[0]} is missing")

    seg_indices = _load_json(files["segments"], "segIndices")
    try:
        seg_indices = np.asarray(seg_indices, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise CloudFormatError(f"{files['segments']}: segIndices is not a list of integers") from None
    if len(seg_indices) != len(cloud):
        raise CloudFormatError(f"{files['segments']}: {len(seg_indices)} segIndices for the "
                               f"{len(cloud)} vertices of {files['mesh'].name}")
    label_map = read_label_map(labels_tsv if labels_tsv is not None else _find_labels_tsv(folder))
    segment_ids, vertex_segment = np.unique(seg_indices, return_inverse=True)
    segment_nyu40 = np.zeros(len(segment_ids), dtype=np.int64)
    segment_object = np.full(len(segment_ids), -1, dtype=np.int64)
    for group in _load_json(files["aggregation"], "segGroups"):
        try:
            wanted = np.asarray(group["segments"], dtype=np.int64)
            label, object_id = group["label"], int(group["objectId"])
        except (KeyError, TypeError, ValueError) as err:
            raise CloudFormatError(f"{files['aggregation']}: malformed segGroup ({err!r})") from None
        pos = np.searchsorted(segment_ids, wanted)
        pos = pos[(pos < len(segment_ids)) & (segment_ids[np.minimum(pos, len(segment_ids) - 1)] == wanted)]
        segment_nyu40[pos] = label_map.get(label, 0)
        segment_object[pos] = object_id
    semantic = nyu40_to_train(segment_nyu40)[vertex_segment]
    instance = segment_object[vertex_segment]
    instance[(semantic == IGNORE_LABEL) | np.isin(semantic, _BACKGROUND_IDS)] = -1
    return ScanNetScene(scene_name, cloud, faces, semantic, instance)


def _derive_groups(semantic: np.ndarray, instance: np.ndarray,
                   segments: "np.ndarray | None") -> "tuple[np.ndarray, list[tuple[int, int, list[int]]]]":
    """(segIndices, [(objectId, train id, segment ids)]) for the writer; checks consistency."""
    foreground = (semantic >= 0) & ~np.isin(semantic, _BACKGROUND_IDS)
    if (foreground & (instance < 0)).any():
        bad = sorted({CLASS_NAMES[s] for s in semantic[foreground & (instance < 0)]})
        raise ValueError(f"vertices of instance classes {bad} have instance -1; give them instance ids")
    # one object per (class, instance); background vertices without an instance grouped per class
    instance = np.where(semantic >= 0, instance, -1)
    span = int(instance.max(initial=-1)) + 2
    keys, key_of_vertex = np.unique((semantic + 1) * span + instance + 1, return_inverse=True)
    key_class, key_instance = keys // span - 1, keys % span - 1
    ids, counts = np.unique(key_instance[(key_class >= 0) & (key_instance >= 0)], return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"instance(s) {ids[counts > 1].tolist()} have vertices of several classes")
    if segments is None:
        segments = key_of_vertex
    else:
        segments = np.asarray(segments, dtype=np.int64).reshape(-1)
        if segments.shape != semantic.shape:
            raise ValueError(f"segments has shape {segments.shape}, expected {semantic.shape}")
    pairs = np.unique(segments * len(keys) + key_of_vertex)  # (segment, object) pairs
    pair_segment, pair_key = pairs // len(keys), pairs % len(keys)
    if len(np.unique(pair_segment)) != len(pairs):
        raise ValueError("some segment holds vertices of several objects or classes")
    next_id = span - 1
    groups = []
    for k, (train_id, object_id) in enumerate(zip(key_class, key_instance)):
        if train_id < 0:
            continue  # unlabelled vertices: their segments belong to no group
        if object_id < 0:
            object_id, next_id = next_id, next_id + 1
        groups.append((int(object_id), int(train_id), pair_segment[pair_key == k].tolist()))
    return segments, groups


def write_labels_tsv(path: "str | Path") -> Path:
    """A ScanNet-style labels tsv mapping each class name (raw_category) to its nyu40 id."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(_TSV_COLUMNS)
        for i, (name, nyu40) in enumerate(zip(CLASS_NAMES, NYU40_IDS)):
            row = {"id": i + 1, "raw_category": name, "category": name, "nyu40id": nyu40, "nyu40class": name}
            writer.writerow([row.get(c, "") for c in _TSV_COLUMNS])
    return path


def write_scannet_scene(folder: "str | Path", scene_name: str, points: np.ndarray, colors: np.ndarray,
                        semantic: np.ndarray, instance: np.ndarray, faces: "np.ndarray | None" = None,
                        segments: "np.ndarray | None" = None, labels_tsv: bool = True) -> "dict[str, Path]":
    """Write a scene folder that ``read_scannet_scene`` (and ScanNet's own scripts) read back.

    ``semantic`` train ids (-1 unlabelled) and ``instance`` ids (-1 none) per vertex. Every
    vertex of an instance class needs an instance id; each (class, instance) becomes one
    segGroup, and walls/floors without an instance one group per class. ``segments`` is an
    optional over-segmentation (each segment inside one group); by default each group is one
    segment. Points are stored as float32, as ScanNet does. Also writes the labels tsv unless
    ``labels_tsv`` is False. Returns the written paths.
    """
    folder = Path(folder)
    points = np.asarray(points)
    n = len(points)
    semantic, instance = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (semantic, instance))
    if len(semantic) != n or len(instance) != n:
        raise ValueError(f"{n} points but {len(semantic)} semantic and {len(instance)} instance ids")
    if semantic.size and (semantic.min() < IGNORE_LABEL or semantic.max() >= len(CLASS_NAMES)):
        raise ValueError(f"semantic ids must be -1..{len(CLASS_NAMES) - 1}, got {semantic.min()}..{semantic.max()}")
    seg_indices, groups = _derive_groups(semantic, instance, segments)
    folder.mkdir(parents=True, exist_ok=True)
    files = scene_files(folder, scene_name)
    cloud = Cloud(points.astype(np.float32), np.asarray(colors, dtype=np.uint8),
                  {"alpha": np.full(n, 255, dtype=np.uint8)})
    write_ply(files["mesh"], cloud, faces)
    files["segments"].write_text(json.dumps({"params": {}, "sceneId": scene_name,
                                             "segIndices": seg_indices.tolist()}))
    seg_groups = [{"id": i, "objectId": object_id, "segments": segs, "label": CLASS_NAMES[train_id]}
                  for i, (object_id, train_id, segs) in enumerate(groups)]
    files["aggregation"].write_text(json.dumps({
        "sceneId": f"scannet.{scene_name}", "appId": "ssen_ros", "segGroups": seg_groups,
        "segmentsFile": f"scannet.{files['segments'].name}"}))
    if labels_tsv:
        files["labels"] = write_labels_tsv(folder / LABELS_TSV)
    return files
