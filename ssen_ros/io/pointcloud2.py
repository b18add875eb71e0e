"""sensor_msgs/PointCloud2 <-> ``Cloud``, vectorised over ``msg.data`` with numpy; no ROS import.

Reading takes any object with the message's attributes (an rclpy message, a ``rosbags``
deserialised one, or a ``SimpleNamespace``): ``fields`` (objects with ``name offset datatype
count``, or such tuples), ``point_step``, ``row_step``, ``height``, ``width``,
``is_bigendian``, ``data`` and optionally ``header``. One numpy structured dtype with the
fields' offsets and ``itemsize = point_step`` is laid over the buffer, so any field order,
padding, count > 1, byte order and row padding (``row_step > width * point_step``) is read
without a Python loop over points.

Writing returns the message's pieces as plain Python/numpy values (``PointCloud2Parts``); the
ROS layer copies them into a real message. Colours are written as a FLOAT32 ``rgb`` field
holding ``r<<16 | g<<8 | b`` bits (PCL's packed ``rgb``), which RViz shows in colour with no settings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssen_ros.io.cloud import Cloud, CloudFormatError, cloud_from_structured, structured_from_cloud

# sensor_msgs/PointField datatype constants.
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
DATATYPES: "dict[int, np.dtype]" = {
    INT8: np.dtype("i1"), UINT8: np.dtype("u1"), INT16: np.dtype("i2"), UINT16: np.dtype("u2"),
    INT32: np.dtype("i4"), UINT32: np.dtype("u4"), FLOAT32: np.dtype("f4"), FLOAT64: np.dtype("f8"),
}
_DATATYPE_OF = {(dt.kind, dt.itemsize): code for code, dt in DATATYPES.items()}


@dataclass
class PointCloud2Parts:
    """The fields of a sensor_msgs/PointCloud2 except the header, as plain values.

    ``fields`` is a list of ``(name, offset, datatype, count)``; ``data`` is bytes (or an
    ``array("B")``, which an rclpy message takes without copying).
    """

    fields: "list[tuple[str, int, int, int]]"
    height: int
    width: int
    point_step: int
    row_step: int
    is_bigendian: bool
    is_dense: bool
    data: bytes


def _field_tuple(f) -> "tuple[str, int, int, int]":
    if isinstance(f, tuple):
        return f
    return (f.name, f.offset, f.datatype, f.count)


def _stamp_ns(header) -> int:
    stamp = getattr(header, "stamp", None)
    return 0 if stamp is None else int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def records_from_pointcloud2(msg, source: str = "PointCloud2") -> np.ndarray:
    """The message's points as a (height*width,) structured array view (copied only when
    rows are padded). Checks the layout and raises ``CloudFormatError`` naming the problem."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name, offset, datatype, count in map(_field_tuple, msg.fields):
        if datatype not in DATATYPES:
            raise CloudFormatError(f"{source}: field {name!r} has unknown datatype {datatype} "
                                   f"(known: 1..8, INT8..FLOAT64)")
        base = DATATYPES[datatype].newbyteorder(order)
        size = base.itemsize * max(count, 1)
        if offset < 0 or offset + size > point_step:
            raise CloudFormatError(f"{source}: field {name!r} at offset {offset} with {size} bytes "
                                   f"does not fit in point_step {point_step}")
        if name in names:
            raise CloudFormatError(f"{source}: field {name!r} appears twice")
        names.append(name)
        formats.append((base, (count,)) if count > 1 else base)
        offsets.append(offset)
    if row_step < width * point_step:
        raise CloudFormatError(f"{source}: row_step {row_step} < width {width} * point_step {point_step}")
    try:
        buffer = np.frombuffer(msg.data, dtype=np.uint8)
    except TypeError:  # a list of ints
        buffer = np.asarray(msg.data, dtype=np.uint8)
    nbytes = buffer.nbytes
    if nbytes != height * row_step:
        raise CloudFormatError(f"{source}: data has {nbytes} bytes, expected height {height} * "
                               f"row_step {row_step} = {height * row_step} "
                               f"(width {width} * point_step {point_step} per row)")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    if height * width == 0:
        return np.zeros(0, dtype=dtype)
    grid = np.ndarray((height, width), dtype=dtype, buffer=buffer,
                      strides=(row_step, point_step))
    return grid.reshape(-1)


def cloud_from_pointcloud2(msg, source: str = "PointCloud2") -> Cloud:
    """Decode a PointCloud2 (any object with its attributes) into a ``Cloud``.

    Non-finite xyz points are dropped (``Cloud.dropped_nonfinite``, ``Cloud.finite_mask``);
    ``frame_id`` and ``stamp_ns`` come from ``msg.header`` when present.
    """
    header = getattr(msg, "header", None)
    return cloud_from_structured(records_from_pointcloud2(msg, source), source=source,
                                 height=int(msg.height), width=int(msg.width),
                                 frame_id=getattr(header, "frame_id", "") if header else "",
                                 stamp_ns=_stamp_ns(header))


def pointcloud2_fields(dtype: np.dtype) -> "list[tuple[str, int, int, int]]":
    """``(name, offset, datatype, count)`` of each field of a structured dtype."""
    out = []
    for name in dtype.names:
        sub, offset = dtype.fields[name][:2]
        base, shape = (sub.base, sub.shape) if sub.shape else (sub, ())
        key = (base.kind, base.itemsize)
        if key not in _DATATYPE_OF:
            raise ValueError(f"field {name!r} has dtype {base}, which PointCloud2 cannot hold")
        out.append((name, offset, _DATATYPE_OF[key], int(np.prod(shape)) if shape else 1))
    return out


def to_pointcloud2_parts(cloud: Cloud) -> PointCloud2Parts:
    """Encode a ``Cloud`` as PointCloud2 pieces: x y z, FLOAT32 ``rgb`` if coloured, extras.

    The cloud is written organised (height x width) when it is exactly its source grid,
    otherwise as one row of ``len(cloud)`` points (dropped points are not restored).
    Little-endian, no padding; bool fields are not allowed (use uint8).
    """
    records = structured_from_cloud(cloud, color_style="packed")
    height, width = (cloud.height, cloud.width) if cloud.is_organized else (1, len(cloud))
    step = records.dtype.itemsize
    return PointCloud2Parts(fields=pointcloud2_fields(records.dtype), height=height, width=width,
                            point_step=step, row_step=step * width, is_bigendian=False,
                            is_dense=True, data=records.tobytes())
