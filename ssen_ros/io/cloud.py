"""The ``Cloud`` record every reader returns, and its conversion to/from numpy structured arrays.

PointCloud2, PCD and PLY all store a cloud as records of named fields; the two functions here
are the one place that turns such records into a ``Cloud`` (xyz, colours, extra fields,
non-finite points dropped and counted) and back. Colour conventions (PCL's ``PointXYZRGB``,
which RViz's RGB8 transformer reads): a 4-byte
``rgb``/``rgba`` field holds ``a<<24 | r<<16 | g<<8 | b`` as a uint32 bit pattern, usually
stored in a FLOAT32 field as RViz and PCL expect; PLY uses separate ``red``/``green``/``blue``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class CloudFormatError(ValueError):
    """A cloud file or message is malformed; the message names the file/field/bytes at fault."""


PACKED_COLOR_FIELDS = ("rgb", "rgba")
SEPARATE_COLOR_FIELDS = ("red", "green", "blue")
READ_COLOR_TRIPLES = (SEPARATE_COLOR_FIELDS, ("r", "g", "b"))
"""Separate uint8 colour fields read as colour: PLY's, and the short names some drivers publish."""
PADDING_FIELDS = ("", "_")


@dataclass
class Cloud:
    """A point cloud with optional colours and per-point fields.

    - ``points``: (N, 3) float32 or float64 xyz, in the dtype the source stored (float64
      from float64 sources; convert before doing arithmetic at ±10 km scale).
    - ``colors``: (N, 3) uint8 RGB, or None.
    - ``fields``: extra per-point arrays, (N,) or (N, count), e.g. ``intensity``, ``label``;
      the alpha of an ``rgba`` source is kept as ``fields["alpha"]`` (uint8).
    - ``frame_id``, ``stamp_ns``: header of a ROS message (empty / 0 for files).
    - ``height``, ``width``: the source grid (height > 1 for organised clouds).
    - ``finite_mask``: bool (height*width,) marking the source points kept (those with finite
      xyz), or None when none was dropped; ``full[finite_mask] = per_point`` restores the
      source layout.
    """

    points: np.ndarray
    colors: "np.ndarray | None" = None
    fields: "dict[str, np.ndarray]" = field(default_factory=dict)
    frame_id: str = ""
    stamp_ns: int = 0
    height: int = 1
    width: int = -1
    finite_mask: "np.ndarray | None" = None

    def __post_init__(self) -> None:
        n = len(self.points)
        if self.points.ndim != 2 or self.points.shape[1] != 3 or self.points.dtype.kind != "f":
            raise ValueError(f"points must be float (N, 3), got {self.points.dtype} {self.points.shape}")
        if self.colors is not None and (self.colors.shape != (n, 3) or self.colors.dtype != np.uint8):
            raise ValueError(f"colors must be uint8 ({n}, 3), got {self.colors.dtype} {self.colors.shape}")
        for name, values in self.fields.items():
            if len(values) != n:
                raise ValueError(f"field {name!r} has {len(values)} values for {n} points")
        if self.width < 0:
            self.width = n
        if self.finite_mask is not None and int(self.finite_mask.sum()) != n:
            raise ValueError(f"finite_mask keeps {int(self.finite_mask.sum())} points, cloud has {n}")

    def __len__(self) -> int:
        return len(self.points)

    @property
    def dropped_nonfinite(self) -> int:
        """How many source points were dropped for non-finite xyz."""
        return 0 if self.finite_mask is None else int(self.finite_mask.size - len(self.points))

    @property
    def is_organized(self) -> bool:
        """True when the points are exactly the source's height x width grid (height > 1)."""
        return self.height > 1 and self.finite_mask is None and len(self) == self.height * self.width


def _native(a: np.ndarray) -> np.ndarray:
    """A contiguous native-byte-order copy of a (possibly strided, big-endian) field view."""
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))


def _unpack_packed_color(values: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """(colors (N, 3) uint8, alpha (N,) uint8) from a 4-byte rgb(a) field of any 4-byte type."""
    as_u32 = values.view(np.dtype("u4").newbyteorder(values.dtype.byteorder))
    as_bytes = np.ascontiguousarray(as_u32, dtype="<u4").view(np.uint8).reshape(-1, 4)  # b g r a
    return as_bytes[:, 2::-1].copy(), as_bytes[:, 3].copy()


def pack_colors(colors: np.ndarray, alpha: "np.ndarray | int" = 255) -> np.ndarray:
    """``a<<24 | r<<16 | g<<8 | b`` as float32 bit patterns (the RViz/PCL ``rgb`` field)."""
    packed = np.empty((len(colors), 4), dtype=np.uint8)  # little-endian byte order b g r a
    packed[:, 2::-1] = colors
    packed[:, 3] = alpha
    return packed.view("<f4").reshape(-1)


def cloud_from_structured(records: np.ndarray, *, source: str, height: int = 1, width: int = -1,
                          frame_id: str = "", stamp_ns: int = 0) -> Cloud:
    """Build a ``Cloud`` from a 1-D structured array of the source's points (any byte order).

    ``x``, ``y``, ``z`` are required; ``rgb``/``rgba`` (4-byte, packed), or uint8
    ``red``/``green``/``blue`` or ``r``/``g``/``b``, become ``colors``; fields named ``_`` or empty are padding;
    every other field lands in ``Cloud.fields``. Points with non-finite xyz are dropped.
    ``source`` names the file or message in errors.
    """
    names = records.dtype.names or ()
    for axis in "xyz":
        if axis not in names:
            raise CloudFormatError(f"{source}: no {axis!r} field; fields are {list(names)}")
        if records.dtype[axis].shape:
            raise CloudFormatError(f"{source}: field {axis!r} has count {records.dtype[axis].shape}, expected 1")
    n = len(records)
    dtype = np.result_type(*(records.dtype[a].newbyteorder("=") for a in "xyz"), np.float32)
    points = np.empty((n, 3), dtype=dtype)
    for i, axis in enumerate("xyz"):
        points[:, i] = records[axis]
    finite = np.isfinite(points[:, 0]) & np.isfinite(points[:, 1]) & np.isfinite(points[:, 2])
    keep = None if finite.all() else finite

    used = {"x", "y", "z", *PADDING_FIELDS}
    colors, fields = None, {}
    packed = [f for f in PACKED_COLOR_FIELDS if f in names
              and records.dtype[f].itemsize == 4 and not records.dtype[f].shape]
    if packed:
        colors, alpha = _unpack_packed_color(records[packed[0]])
        if packed[0] == "rgba":
            fields["alpha"] = alpha
        used.add(packed[0])
    else:
        triple = next((t for t in READ_COLOR_TRIPLES
                       if all(f in names and records.dtype[f] == np.uint8 for f in t)), None)
        if triple is not None:
            colors = np.stack([records[f] for f in triple], axis=1)
            used.update(triple)
    for name in names:
        if name not in used:
            fields[name] = _native(records[name])
    if keep is not None:
        points = points[keep]
        colors = None if colors is None else colors[keep]
        fields = {k: v[keep] for k, v in fields.items()}
    return Cloud(points, colors, fields, frame_id=frame_id, stamp_ns=stamp_ns, height=height,
                 width=n // max(height, 1) if width < 0 else width, finite_mask=keep)


def structured_from_cloud(cloud: Cloud, *, color_style: str = "packed") -> np.ndarray:
    """The cloud's points as a packed little-endian structured array, ready to write.

    Fields: ``x y z`` (the points' dtype), then colours, then ``cloud.fields`` in order.
    ``color_style="packed"`` writes one FLOAT32 ``rgb`` field (``rgba`` when
    ``fields["alpha"]`` exists, else alpha 255 as PCL does); ``"separate"`` writes uint8
    ``red green blue`` (+ ``alpha``) as PLY does.
    """
    if color_style not in ("packed", "separate"):
        raise ValueError(f"color_style must be 'packed' or 'separate', got {color_style!r}")
    n = len(cloud)
    alpha = cloud.fields.get("alpha") if cloud.colors is not None else None
    extras = {k: v for k, v in cloud.fields.items() if not (k == "alpha" and alpha is not None)}
    columns: "list[tuple[str, np.ndarray]]" = [(a, cloud.points[:, i]) for i, a in enumerate("xyz")]
    if cloud.colors is not None and color_style == "packed":
        name = "rgb" if alpha is None else "rgba"
        columns.append((name, pack_colors(cloud.colors, 255 if alpha is None else alpha)))
    elif cloud.colors is not None:
        columns += [(f, cloud.colors[:, i]) for i, f in enumerate(SEPARATE_COLOR_FIELDS)]
        if alpha is not None:
            columns.append(("alpha", np.asarray(alpha, dtype=np.uint8)))
    columns += list(extras.items())
    names = [c[0] for c in columns]
    clash = sorted({x for x in names if names.count(x) > 1})
    if clash:
        raise ValueError(f"cloud field name(s) {clash} clash with xyz/colour fields")
    dtype = np.dtype([(name, values.dtype.newbyteorder("<"), values.shape[1:])
                      for name, values in columns])
    records = np.empty(n, dtype=dtype)
    for name, values in columns:
        records[name] = values
    return records
