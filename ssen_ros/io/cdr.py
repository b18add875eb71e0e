"""A serialised sensor_msgs/PointCloud2 read in place (its points not copied), and written with
its points left for the caller to fill in place.

ROS 2 hands a raw subscription the message as CDR bytes (the OMG's Common Data Representation,
XCDR1, as Fast DDS and Cyclone DDS write it for ROS types): a 4-byte encapsulation header (byte 1
is 1 for little-endian, 0 for big-endian), then the fields in ``.msg`` order, each number aligned
to its size counted from the end of that header, strings as a uint32 length (with the closing
NUL) and the characters, sequences as a uint32 count and the elements. A PointCloud2 is::

    header: stamp (int32 sec, uint32 nanosec), frame_id (string)
    height, width (uint32)
    fields: sequence of (name: string, offset: uint32, datatype: uint8, count: uint32)
    is_bigendian (bool), point_step, row_step (uint32)
    data (sequence of uint8), is_dense (bool)

``deserialize_message`` copies ``data`` into a Python ``array``; :func:`read_pointcloud2` gives a
:class:`SerializedCloud` whose ``data`` is a ``memoryview`` of the serialised bytes themselves,
with the same attributes, so ``ssen_ros.io.pointcloud2`` decodes it as it does a message.
Bytes that do not hold a whole PointCloud2 raise ``CdrError`` naming the field and offset.
:func:`new_pointcloud2` writes the same layout (little-endian, padding zero) and returns a
writable view of its ``data``, so the caller writes the points into the serialised message
itself; rclpy's ``Publisher.publish`` sends ``bytes`` as they are (``publish_raw``), with no
message to convert and serialise. No ROS import.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import numpy as np

ENCAPSULATION_HEADER = 4
"""Bytes before the message: representation id (2), options (2)."""


class CdrError(ValueError):
    """Bytes that are not a serialised PointCloud2; the message names the field and offset."""


@dataclass
class SerializedCloud:
    """A PointCloud2's attributes, ``data`` a view of the bytes it was read from (read-only).
    ``header`` has ``frame_id`` and ``stamp`` (``sec``, ``nanosec``), as a message's has."""

    header: SimpleNamespace
    height: int
    width: int
    fields: "list[tuple[str, int, int, int]]"
    is_bigendian: bool
    point_step: int
    row_step: int
    data: memoryview
    is_dense: bool


class _Reader:
    def __init__(self, raw, order: str):
        self.raw, self.pos, self.order = raw, ENCAPSULATION_HEADER, order

    def _take(self, size: int, what: str) -> int:
        start = self.pos
        if start + size > len(self.raw):
            raise CdrError(f"{what}: {size} bytes at offset {start}, but the message has {len(self.raw)}")
        self.pos += size
        return start

    def number(self, code: str, what: str) -> int:
        size = struct.calcsize(code)
        self.pos += -(self.pos - ENCAPSULATION_HEADER) % size  # aligned from the data's start
        return struct.unpack_from(self.order + code, self.raw, self._take(size, what))[0]

    def string(self, what: str) -> str:
        length = self.number("I", f"{what} length")
        start = self._take(length, what)
        text = bytes(self.raw[start:start + length])
        if length and text[-1:] != b"\0":
            raise CdrError(f"{what}: a string of {length} bytes at offset {start} does not end in NUL")
        return text[:-1].decode("utf-8")  # UnicodeDecodeError is a ValueError


def read_pointcloud2(raw) -> SerializedCloud:
    """The PointCloud2 serialised in ``raw`` (bytes or any buffer), its data not copied."""
    raw = memoryview(raw).cast("B")
    if len(raw) < ENCAPSULATION_HEADER:
        raise CdrError(f"{len(raw)} bytes: too short for the CDR encapsulation header")
    if raw[0] != 0 or raw[1] not in (0, 1):
        raise CdrError(f"encapsulation {bytes(raw[:2]).hex()}: not plain CDR (0000 or 0001)")
    r = _Reader(raw, "<" if raw[1] == 1 else ">")
    sec, nanosec = r.number("i", "header.stamp.sec"), r.number("I", "header.stamp.nanosec")
    header = SimpleNamespace(frame_id=r.string("header.frame_id"),
                             stamp=SimpleNamespace(sec=sec, nanosec=nanosec))
    height, width = r.number("I", "height"), r.number("I", "width")
    count = r.number("I", "fields count")
    if count > len(raw):  # each field takes bytes, so a larger count is garbage
        raise CdrError(f"fields count {count} exceeds the message's {len(raw)} bytes")
    fields = []
    for k in range(count):
        name = r.string(f"fields[{k}].name")
        fields.append((name, r.number("I", f"fields[{k}].offset"), r.number("B", f"fields[{k}].datatype"),
                       r.number("I", f"fields[{k}].count")))
    is_bigendian = bool(r.number("B", "is_bigendian"))
    point_step, row_step = r.number("I", "point_step"), r.number("I", "row_step")
    size = r.number("I", "data length")
    start = r._take(size, "data")
    is_dense = bool(r.number("B", "is_dense"))
    return SerializedCloud(header, height, width, fields, is_bigendian, point_step, row_step,
                           raw[start:start + size], is_dense)


class _Writer:
    """Little-endian CDR into a growing ``bytearray``, aligned as :class:`_Reader` reads."""

    def __init__(self):
        self.buf = bytearray(b"\0\1\0\0")  # CDR_LE, no options

    def number(self, code: str, value) -> None:
        size = struct.calcsize(code)
        self.buf += bytes(-(len(self.buf) - ENCAPSULATION_HEADER) % size)
        self.buf += struct.pack("<" + code, value)

    def string(self, text: str) -> None:
        raw = text.encode("utf-8") + b"\0"
        self.number("I", len(raw))
        self.buf += raw


def new_pointcloud2(frame_id: str, sec: int, nanosec: int, height: int, width: int,
                    fields: "Sequence[tuple[str, int, int, int]]", is_bigendian: bool,
                    point_step: int, row_step: int, is_dense: bool, buffer: "np.ndarray | None" = None
                    ) -> "tuple[np.ndarray, memoryview]":
    """A serialised PointCloud2 (arguments in ``.msg`` order, ``fields`` as ``(name, offset,
    datatype, count)``) as a uint8 array, and a writable view of its ``height * row_step`` data
    bytes: zeros in a new array, whatever ``buffer`` held there otherwise.

    The array is the start of ``buffer`` (uint8) when that is large enough, else a new one: a
    caller that writes one map-sized cloud after another keeps one buffer, whose pages the
    kernel has already mapped, where a new array of that size is faulted in page by page on
    every call; such a caller writes every data byte, so they are not cleared first. rclpy's
    ``Publisher.publish`` takes ``bytes`` (rclpy/publisher.py), so publishing costs one plain
    copy (``tobytes``)."""
    w = _Writer()
    w.number("i", sec)
    w.number("I", nanosec)
    w.string(frame_id)
    w.number("I", height)
    w.number("I", width)
    w.number("I", len(fields))
    for name, offset, datatype, count in fields:
        w.string(name)
        w.number("I", offset)
        w.number("B", datatype)
        w.number("I", count)
    w.number("B", bool(is_bigendian))
    w.number("I", point_step)
    w.number("I", row_step)
    size = height * row_step
    w.number("I", size)
    start = len(w.buf)
    total = start + size + 1  # the whole message: header, data, is_dense
    if buffer is not None and len(buffer) >= total:
        buf = buffer[:total]
    else:
        buf = np.zeros(total, dtype=np.uint8)
    buf[:start] = np.frombuffer(w.buf, dtype=np.uint8)
    buf[-1] = bool(is_dense)
    return buf, memoryview(buf)[start:start + size]
