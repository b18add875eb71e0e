"""PLY files, ascii and binary, through ``plyfile`` (the maintained numpy PLY library).

Vertices become a ``Cloud``: ``x y z``, uint8 ``red green blue`` as colours (``alpha`` kept in
``fields``), every other scalar vertex property in ``fields`` (e.g. ``label``, ``instance``).
Triangle faces (``vertex_indices`` or ``vertex_index``, as in ScanNet ``*_vh_clean_2.ply``)
are read by ``read_ply_mesh`` and written by ``write_ply``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import plyfile

from ssen_ros.io.cloud import Cloud, CloudFormatError, cloud_from_structured, structured_from_cloud

_FACE_PROPERTIES = ("vertex_indices", "vertex_index")
_PLY_KINDS = {"i1", "u1", "i2", "u2", "i4", "u4", "f4", "f8"}


def _read(path: Path) -> plyfile.PlyData:
    """Parse the file, memory-mapping triangle faces when every face is a triangle."""
    triangles = {"face": {name: 3 for name in _FACE_PROPERTIES}}
    try:
        try:
            return plyfile.PlyData.read(str(path), known_list_len=triangles)
        except plyfile.PlyElementParseError as err:
            if "unexpected list length" not in str(err):
                raise
            return plyfile.PlyData.read(str(path))  # polygons of other sizes: slow generic path
    except plyfile.PlyParseError as err:
        raise CloudFormatError(f"{path} ({path.stat().st_size} bytes): not a readable PLY file: "
                               f"{err}") from None
    except (ValueError, EOFError) as err:  # numpy/mmap errors on truncated data
        raise CloudFormatError(f"{path}: truncated or corrupt PLY data "
                               f"({path.stat().st_size} bytes): {err}") from None


def _vertex_cloud(ply: plyfile.PlyData, path: Path) -> Cloud:
    if "vertex" not in ply:
        raise CloudFormatError(f"{path}: no 'vertex' element; elements are {[e.name for e in ply.elements]}")
    records = ply["vertex"].data
    lists = [name for name in records.dtype.names if records.dtype[name] == object]
    if lists:
        raise CloudFormatError(f"{path}: vertex list properties {lists} are not supported")
    return cloud_from_structured(records, source=str(path))


def read_ply(path: "str | Path") -> Cloud:
    """Read the vertices of a PLY file (ascii or binary) as a ``Cloud``."""
    path = Path(path)
    return _vertex_cloud(_read(path), path)


def read_ply_mesh(path: "str | Path") -> "tuple[Cloud, np.ndarray]":
    """Read vertices and triangle faces: ``(cloud, faces int64 (F, 3))``; no faces gives (0, 3).

    Vertices with non-finite xyz would renumber the faces, so they raise ``CloudFormatError``.
    """
    path = Path(path)
    ply = _read(path)
    cloud = _vertex_cloud(ply, path)
    if cloud.dropped_nonfinite:
        raise CloudFormatError(f"{path}: {cloud.dropped_nonfinite} vertices have non-finite xyz")
    if "face" not in ply:
        return cloud, np.zeros((0, 3), dtype=np.int64)
    data = ply["face"].data
    name = next((n for n in _FACE_PROPERTIES if n in data.dtype.names), None)
    if name is None:
        raise CloudFormatError(f"{path}: face element has no {' or '.join(_FACE_PROPERTIES)} property")
    faces = data[name]
    if faces.dtype == object:  # ascii, or some face is not a triangle
        sizes = sorted({len(f) for f in faces})
        if sizes not in ([], [3]):
            raise CloudFormatError(f"{path}: only triangle faces are supported, found faces of sizes {sizes}")
        faces = np.vstack(faces) if len(faces) else np.zeros((0, 3))
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= len(cloud)):
        raise CloudFormatError(f"{path}: face indices range {faces.min()}..{faces.max()}, "
                               f"the file has {len(cloud)} vertices")
    return cloud, faces


def _ply_compatible(records: np.ndarray) -> np.ndarray:
    """Narrow 64-bit integer fields to 32 bits (PLY has none) when no value is lost."""
    changes = {}
    for name in records.dtype.names:
        dtype = records.dtype[name]
        if dtype.shape:
            raise ValueError(f"field {name!r} has shape {dtype.shape}; PLY vertex fields must be scalar")
        if dtype.kind in "iu" and dtype.itemsize == 8:
            narrow = np.dtype(f"<{dtype.kind}4")
            info = np.iinfo(narrow)
            values = records[name]
            if values.size and (values.min() < info.min or values.max() > info.max):
                raise ValueError(f"field {name!r} has values outside {narrow}, which PLY needs")
            changes[name] = narrow
        elif dtype.str[1:] not in _PLY_KINDS:
            raise ValueError(f"field {name!r} has dtype {dtype}, which PLY cannot hold")
    if not changes:
        return records
    out = np.empty(len(records), dtype=[(n, changes.get(n, records.dtype[n])) for n in records.dtype.names])
    for name in records.dtype.names:
        out[name] = records[name]
    return out


def write_ply(path: "str | Path", cloud: Cloud, faces: "np.ndarray | None" = None,
              binary: bool = True) -> Path:
    """Write ``cloud`` (and triangle ``faces`` (F, 3), if given) as a PLY file.

    Vertex properties: x y z (the points' dtype), uchar red green blue (+ alpha from
    ``fields["alpha"]``) when coloured, then ``cloud.fields``; int64 fields are stored as int32.
    """
    path = Path(path)
    records = _ply_compatible(structured_from_cloud(cloud, color_style="separate"))
    elements = [plyfile.PlyElement.describe(records, "vertex")]
    if faces is not None:
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= len(cloud)):
            raise ValueError(f"face indices range {faces.min()}..{faces.max()} for {len(cloud)} vertices")
        face_records = np.empty(len(faces), dtype=[("vertex_indices", "<i4", (3,))])
        face_records["vertex_indices"] = faces
        elements.append(plyfile.PlyElement.describe(face_records, "face",
                                                    len_types={"vertex_indices": "u1"}))
    plyfile.PlyData(elements, text=not binary).write(str(path))
    return path
