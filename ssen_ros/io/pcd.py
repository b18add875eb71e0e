"""PCD files (Point Cloud Library format v0.7): ``DATA ascii``, ``binary`` and ``binary_compressed``.

``binary`` stores the points as packed little-endian records; ``binary_compressed`` stores
``<uint32 compressed size><uint32 uncompressed size>`` then LZF-compressed data laid out field
by field (all x, then all y, ...). LZF comes from the ``python-neo-lzf`` wheel (module ``lzf``,
a build of liblzf, the same codec PCL uses). Fields named ``_`` are padding and are skipped.
Packed ``rgb``/``rgba`` are written as PCL does: FLOAT32 bits in binary, the uint32 value in
ascii. The header's VIEWPOINT is not applied to the points.
"""
from __future__ import annotations

from pathlib import Path

import lzf
import numpy as np

from ssen_ros.io.cloud import (PACKED_COLOR_FIELDS, PADDING_FIELDS, Cloud, CloudFormatError,
                               cloud_from_structured, structured_from_cloud)

DATA_FORMATS = ("ascii", "binary", "binary_compressed")
_TYPE_SIZES = {"F": (4, 8), "U": (1, 2, 4, 8), "I": (1, 2, 4, 8)}
_KIND = {"F": "f", "U": "u", "I": "i"}
_TYPE_OF_KIND = {"f": "F", "u": "U", "i": "I"}


def _parse_header(raw: bytes, path: Path) -> "tuple[dict[str, list[str]], int]":
    """Header entries (keyword -> tokens) and the byte offset where the data starts."""
    header: "dict[str, list[str]]" = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise CloudFormatError(f"{path}: no DATA line in the header (file has {len(raw)} bytes)")
        line = raw[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            return header, pos


def _layout(header: "dict[str, list[str]]", path: Path) -> "tuple[list[tuple[str, np.dtype, int]], int, int, int]":
    """(fields as (name, scalar dtype, count), width, height, points) from a parsed header."""
    for key in ("FIELDS", "SIZE", "TYPE", "WIDTH", "DATA"):
        if key not in header:
            raise CloudFormatError(f"{path}: header has no {key} line")
    names, sizes, types = header["FIELDS"], header["SIZE"], header["TYPE"]
    counts = header.get("COUNT", ["1"] * len(names))
    if not len(names) == len(sizes) == len(types) == len(counts):
        raise CloudFormatError(f"{path}: FIELDS/SIZE/TYPE/COUNT have {len(names)}/{len(sizes)}/"
                               f"{len(types)}/{len(counts)} entries")
    try:
        width = int(header["WIDTH"][0])
        height = int(header.get("HEIGHT", ["1"])[0])
        points = int(header.get("POINTS", [str(width * height)])[0])
        sizes_i, counts_i = [int(s) for s in sizes], [int(c) for c in counts]
    except (ValueError, IndexError) as err:
        raise CloudFormatError(f"{path}: bad number in header: {err}") from None
    if min(width, height, points, *sizes_i, *counts_i) < 0 or 0 in counts_i:
        raise CloudFormatError(f"{path}: header has a negative WIDTH, HEIGHT, POINTS or SIZE, or a COUNT "
                               f"below 1 (WIDTH {width}, HEIGHT {height}, POINTS {points}, COUNT {' '.join(counts)})")
    if points != width * height:
        raise CloudFormatError(f"{path}: POINTS {points} != WIDTH {width} * HEIGHT {height}")
    fields = []
    for name, size, kind, count in zip(names, sizes_i, types, counts_i):
        if kind not in _TYPE_SIZES or size not in _TYPE_SIZES[kind]:
            raise CloudFormatError(f"{path}: field {name!r} has unsupported TYPE {kind} SIZE {size}")
        fields.append((name, np.dtype(f"<{_KIND[kind]}{size}"), count))
    return fields, width, height, points


def _records_dtype(fields: "list[tuple[str, np.dtype, int]]") -> np.dtype:
    """Packed record dtype of the fields, padding fields left out but their bytes kept."""
    names, formats, offsets, offset = [], [], [], 0
    for name, dtype, count in fields:
        if name not in PADDING_FIELDS:
            names.append(name)
            formats.append((dtype, (count,)) if count > 1 else dtype)
            offsets.append(offset)
        offset += dtype.itemsize * count
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})


def _truncated(path: Path, what: str, need: int, have: int) -> CloudFormatError:
    return CloudFormatError(f"{path}: truncated: {what} needs {need} bytes after the header, "
                            f"the file has {have}")


def _read_binary(body: bytes, dtype: np.dtype, n: int, path: Path) -> np.ndarray:
    need = n * dtype.itemsize
    if len(body) < need:
        raise _truncated(path, f"DATA binary ({n} points x {dtype.itemsize} bytes)", need, len(body))
    return np.frombuffer(body, dtype=dtype, count=n)


def _read_compressed(body: bytes, fields, dtype: np.dtype, n: int, path: Path) -> np.ndarray:
    if len(body) < 8:
        raise _truncated(path, "DATA binary_compressed size words", 8, len(body))
    compressed, uncompressed = (int(v) for v in np.frombuffer(body, dtype="<u4", count=2))
    if len(body) - 8 < compressed:
        raise _truncated(path, f"DATA binary_compressed ({compressed} compressed bytes + 8)",
                         compressed + 8, len(body))
    if uncompressed != n * dtype.itemsize:
        raise CloudFormatError(f"{path}: binary_compressed holds {uncompressed} bytes, expected "
                               f"{n} points x {dtype.itemsize} bytes = {n * dtype.itemsize}")
    if uncompressed == 0:
        return np.zeros(0, dtype=dtype)
    try:
        data = lzf.decompress(body[8:8 + compressed], uncompressed)
    except ValueError:  # corrupt stream
        data = None
    if data is None or len(data) != uncompressed:  # None: it would exceed `uncompressed`
        raise CloudFormatError(f"{path}: LZF data ({compressed} bytes) does not decompress to "
                               f"the {uncompressed} bytes the size word announces")
    records = np.empty(n, dtype=dtype)
    offset = 0
    for name, field_dtype, count in fields:  # field-by-field (SoA) layout
        if name not in PADDING_FIELDS:
            column = np.frombuffer(data, dtype=field_dtype, count=n * count, offset=offset)
            records[name] = column.reshape(n, count) if count > 1 else column
        offset += field_dtype.itemsize * count * n
    return records


def _parse_column(tokens: np.ndarray, dtype: np.dtype, packed_color: bool) -> np.ndarray:
    if packed_color:  # PCL writes packed colours as their uint32 value; old files as a float
        try:
            return tokens.astype(np.uint64).astype("<u4").view(dtype)
        except ValueError:
            pass
    if dtype.kind == "f":
        return tokens.astype(dtype)
    return tokens.astype(np.int64 if dtype.kind == "i" else np.uint64).astype(dtype)


def _read_ascii(body: bytes, fields, dtype: np.dtype, n: int, path: Path) -> np.ndarray:
    ncols = sum(count for _, _, count in fields)
    tokens = np.array(body.decode("ascii", errors="replace").split())
    if tokens.size < n * ncols:
        raise CloudFormatError(f"{path}: truncated: DATA ascii needs {n} points x {ncols} values "
                               f"= {n * ncols}, the file has {tokens.size} values")
    table = tokens[:n * ncols].reshape(n, ncols)
    records = np.empty(n, dtype=dtype)
    col = 0
    for name, field_dtype, count in fields:
        if name not in PADDING_FIELDS:
            try:
                values = np.stack([_parse_column(table[:, col + k], field_dtype,
                                                 name in PACKED_COLOR_FIELDS and field_dtype.itemsize == 4)
                                   for k in range(count)], axis=1)
            except (ValueError, OverflowError) as err:
                raise CloudFormatError(f"{path}: field {name!r}: bad ascii value for "
                                       f"{field_dtype.kind}{field_dtype.itemsize}: {err}") from None
            records[name] = values if count > 1 else values[:, 0]
        col += count
    return records


def read_pcd(path: "str | Path") -> Cloud:
    """Read a PCD file (ascii, binary or binary_compressed) into a ``Cloud``.

    Points with non-finite xyz are dropped and counted; an organised file keeps its
    ``height``/``width`` and ``finite_mask``. Malformed or truncated files raise
    ``CloudFormatError`` naming the file and the byte counts.
    """
    path = Path(path)
    raw = path.read_bytes()
    header, start = _parse_header(raw, path)
    fields, width, height, n = _layout(header, path)
    dtype = _records_dtype(fields)
    body = raw[start:]
    kind = header["DATA"][0].lower() if header["DATA"] else ""
    if kind == "binary":
        records = _read_binary(body, dtype, n, path)
    elif kind == "binary_compressed":
        records = _read_compressed(body, fields, dtype, n, path)
    elif kind == "ascii":
        records = _read_ascii(body, fields, dtype, n, path)
    else:
        raise CloudFormatError(f"{path}: unknown DATA {kind!r}; expected one of {DATA_FORMATS}")
    return cloud_from_structured(records, source=str(path), height=height, width=width)


def _ascii_format(name: str, dtype: np.dtype) -> str:
    if name in PACKED_COLOR_FIELDS or dtype.kind in "ui":
        return "%d"
    return "%.9g" if dtype.itemsize == 4 else "%.17g"


def write_pcd(path: "str | Path", cloud: Cloud, data: str = "binary_compressed") -> Path:
    """Write ``cloud`` as a PCD v0.7 file with ``data`` one of ascii, binary, binary_compressed.

    Fields: x y z, a FLOAT32 ``rgb`` (``rgba`` with ``fields["alpha"]``) if coloured, then
    ``cloud.fields``. Organised when the cloud is exactly its source grid, else one row.
    """
    if data not in DATA_FORMATS:
        raise ValueError(f"data must be one of {DATA_FORMATS}, got {data!r}")
    path = Path(path)
    records = structured_from_cloud(cloud, color_style="packed")
    names = list(records.dtype.names)
    subs = [records.dtype[name] for name in names]
    scalars = [s.base if s.shape else s for s in subs]
    counts = [int(np.prod(s.shape)) if s.shape else 1 for s in subs]
    for name, scalar in zip(names, scalars):
        if scalar.kind not in _TYPE_OF_KIND:
            raise ValueError(f"field {name!r} has dtype {scalar}, which PCD cannot hold")
    height, width = (cloud.height, cloud.width) if cloud.is_organized else (1, len(cloud))
    header = "\n".join([
        "# .PCD v0.7 - Point Cloud Data file format", "VERSION 0.7",
        "FIELDS " + " ".join(names),
        "SIZE " + " ".join(str(s.itemsize) for s in scalars),
        "TYPE " + " ".join(_TYPE_OF_KIND[s.kind] for s in scalars),
        "COUNT " + " ".join(map(str, counts)),
        f"WIDTH {width}", f"HEIGHT {height}", "VIEWPOINT 0 0 0 1 0 0 0",
        f"POINTS {len(cloud)}", f"DATA {data}", ""])
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        if data == "binary":
            f.write(records.tobytes())
        elif data == "binary_compressed":
            soa = b"".join(np.ascontiguousarray(records[name]).tobytes() for name in names)
            packed = lzf.compress(soa, len(soa) + len(soa) // 16 + 64) if soa else b""
            f.write(np.array([len(packed), len(soa)], dtype="<u4").tobytes() + packed)
        else:
            columns, formats = [], []
            for name, scalar, count in zip(names, scalars, counts):
                values = records[name].reshape(len(records), count)
                if name in PACKED_COLOR_FIELDS:
                    values = values.view("<u4")
                columns += [values[:, k] for k in range(count)]
                formats += [_ascii_format(name, scalar)] * count
            table = np.rec.fromarrays(columns) if columns and len(records) else None
            if table is not None:
                np.savetxt(f, table, fmt=" ".join(formats))
    return path
