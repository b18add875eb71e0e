"""PointCloud2 bytes <-> Cloud: layouts, types, colours, NaN, errors, and cross-checks with rclpy/rosbags."""
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from ssen_ros.io import Cloud, CloudFormatError
from ssen_ros.io.pointcloud2 import (DATATYPES, FLOAT32, FLOAT64, INT16, INT32, INT8, UINT16, UINT32, UINT8,
                                     cloud_from_pointcloud2, to_pointcloud2_parts)

_STRUCT = {INT8: "b", UINT8: "B", INT16: "h", UINT16: "H", INT32: "i", UINT32: "I", FLOAT32: "f", FLOAT64: "d"}


def _msg(fields, point_step, rows, width, row_step=None, bigendian=False, header=None):
    """A message-like object whose data is packed point by point with ``struct`` (independent of numpy).

    ``rows`` is a list of rows, each a list of points, each a dict name -> value or list of values.
    """
    row_step = row_step or width * point_step
    order = ">" if bigendian else "<"
    data = bytearray(len(rows) * row_step)
    for r, row in enumerate(rows):
        for c, point in enumerate(row):
            base = r * row_step + c * point_step
            for name, offset, datatype, count in fields:
                values = point[name] if count > 1 else [point[name]]
                struct.pack_into(f"{order}{count}{_STRUCT[datatype]}", data, base + offset, *values)
    return SimpleNamespace(fields=fields, point_step=point_step, row_step=row_step, height=len(rows),
                           width=width, is_bigendian=bigendian, data=bytes(data), header=header)


def _parts_msg(parts, header=None):
    return SimpleNamespace(header=header, **vars(parts))


def test_round_trip_exact_with_colours_and_extra_fields():
    rng = np.random.default_rng(0)
    n = 1000
    cloud = Cloud(rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 256, (n, 3), dtype=np.uint8),
                  {"intensity": rng.random(n).astype(np.float32), "label": rng.integers(-1, 20, n).astype(np.int32),
                   "normal": rng.normal(size=(n, 3)).astype(np.float64), "ring": rng.integers(0, 64, n).astype(np.uint16)})
    parts = to_pointcloud2_parts(cloud)
    assert [f[0] for f in parts.fields] == ["x", "y", "z", "rgb", "intensity", "label", "normal", "ring"]
    assert parts.fields[3] == ("rgb", 12, FLOAT32, 1)  # RViz: packed colour in a FLOAT32 field
    assert parts.fields[6][2:] == (FLOAT64, 3)
    assert parts.height == 1 and parts.width == n and len(parts.data) == n * parts.point_step == parts.row_step
    back = cloud_from_pointcloud2(_parts_msg(parts))
    assert back.points.dtype == np.float32
    np.testing.assert_array_equal(back.points, cloud.points)
    np.testing.assert_array_equal(back.colors, cloud.colors)
    assert back.fields.keys() == cloud.fields.keys()
    for name in cloud.fields:
        assert back.fields[name].dtype == cloud.fields[name].dtype
        np.testing.assert_array_equal(back.fields[name], cloud.fields[name])
    assert to_pointcloud2_parts(back).data == parts.data  # and bytes -> cloud -> bytes


def test_rgb_bits_are_what_rviz_reads():
    cloud = Cloud(np.zeros((2, 3), np.float32), np.array([[255, 0, 0], [1, 2, 3]], np.uint8))
    parts = to_pointcloud2_parts(cloud)
    rgb = [struct.unpack_from("<I", parts.data, i * parts.point_step + 12)[0] & 0xFFFFFF for i in range(2)]
    assert rgb == [0xFF0000, 0x010203]


def test_float64_points_round_trip():
    points = np.array([[10_000.123456789, -10_000.000000001, 0.5]])
    parts = to_pointcloud2_parts(Cloud(points))
    assert [f[2] for f in parts.fields] == [FLOAT64] * 3
    np.testing.assert_array_equal(cloud_from_pointcloud2(_parts_msg(parts)).points, points)


@pytest.mark.parametrize("bigendian", [False, True])
def test_any_field_order_padding_mixed_types_and_byte_order(bigendian):
    # rgb first, z before x, a float64 y, a uint16 field, a count-3 field, and padding bytes
    fields = [("rgb", 0, UINT32, 1), ("z", 4, FLOAT32, 1), ("ring", 8, UINT16, 1), ("x", 12, FLOAT32, 1),
              ("y", 16, FLOAT64, 1), ("normal", 24, INT16, 3)]
    points = [{"rgb": (7 << 24) | (10 << 16) | (20 << 8) | 30, "z": 3.5, "ring": 65535, "x": -1.25,
               "y": 1e-3 * i, "normal": [i, -i, 32767]} for i in range(5)]
    msg = _msg(fields, 40, [points], 5, bigendian=bigendian)
    cloud = cloud_from_pointcloud2(msg)
    assert cloud.points.dtype == np.float64  # widest of x, y, z
    np.testing.assert_array_equal(cloud.points, [[-1.25, 1e-3 * i, 3.5] for i in range(5)])
    np.testing.assert_array_equal(cloud.colors, [[10, 20, 30]] * 5)
    np.testing.assert_array_equal(cloud.fields["ring"], [65535] * 5)
    np.testing.assert_array_equal(cloud.fields["normal"], [[i, -i, 32767] for i in range(5)])
    assert cloud.fields["normal"].dtype == np.int16 and cloud.fields["normal"].dtype.isnative
    assert "alpha" not in cloud.fields


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_every_datatype(datatype):
    dtype = DATATYPES[datatype]
    values = [0, 1, 100] if dtype.kind == "u" else [-100, 0, 1]
    if dtype.kind == "f":
        values = [-1.5, 0.25, 3e4]
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("v", 12, datatype, 2)]
    msg = _msg(fields, 12 + 2 * dtype.itemsize, [[{"x": 0, "y": 0, "z": 0, "v": [v, -v if dtype.kind != "u" else v]}
                                                  for v in values]], 3)
    cloud = cloud_from_pointcloud2(msg)
    assert cloud.fields["v"].dtype == dtype
    np.testing.assert_array_equal(cloud.fields["v"][:, 0], values)


def test_rgba_float32_keeps_alpha_and_round_trips():
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("rgba", 12, FLOAT32, 1)]
    bits = (128 << 24) | (1 << 16) | (2 << 8) | 3
    msg = _msg(fields, 16, [[{"x": 1, "y": 2, "z": 3, "rgba": struct.unpack("<f", struct.pack("<I", bits))[0]}]], 1)
    cloud = cloud_from_pointcloud2(msg)
    np.testing.assert_array_equal(cloud.colors, [[1, 2, 3]])
    np.testing.assert_array_equal(cloud.fields["alpha"], [128])
    parts = to_pointcloud2_parts(cloud)
    assert [f[0] for f in parts.fields] == ["x", "y", "z", "rgba"]
    assert parts.data == msg.data


@pytest.mark.parametrize("names", [("r", "g", "b"), ("red", "green", "blue")])
def test_separate_uint8_colour_fields_are_colour(names):
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1),
              (names[2], 12, UINT8, 1), (names[1], 13, UINT8, 1), (names[0], 14, UINT8, 1)]  # b g r, as drivers pack
    point = {"x": 1, "y": 2, "z": 3, names[0]: 200, names[1]: 100, names[2]: 7}
    cloud = cloud_from_pointcloud2(_msg(fields, 16, [[point, dict(point, **{names[0]: 9})]], 2))
    np.testing.assert_array_equal(cloud.colors, [[200, 100, 7], [9, 100, 7]])
    assert cloud.fields == {}
    as_int = [(n, o, INT16 if n == names[1] else t, c) for n, o, t, c in fields]  # not uint8: no colour
    as_int = [f if f[0] != names[0] else (names[0], 15, UINT8, 1) for f in as_int]
    cloud = cloud_from_pointcloud2(_msg(as_int, 16, [[point]], 1))
    assert cloud.colors is None and set(cloud.fields) == set(names)


def test_organised_cloud_with_row_padding_and_nonfinite_points():
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("i", 12, UINT8, 1)]
    bad = {(0, 1): float("nan"), (1, 0): float("inf"), (2, 3): float("-inf")}
    rows = [[{"x": bad.get((r, c), r), "y": c, "z": 1.0, "i": 10 * r + c} for c in range(4)] for r in range(3)]
    msg = _msg(fields, 16, rows, 4, row_step=4 * 16 + 7,
               header=SimpleNamespace(frame_id="camera", stamp=SimpleNamespace(sec=12, nanosec=345)))
    cloud = cloud_from_pointcloud2(msg)
    assert (cloud.height, cloud.width, len(cloud), cloud.dropped_nonfinite) == (3, 4, 9, 3)
    assert cloud.frame_id == "camera" and cloud.stamp_ns == 12_000_000_345
    expected_mask = np.ones(12, bool)
    expected_mask[[1, 4, 11]] = False
    np.testing.assert_array_equal(cloud.finite_mask, expected_mask)
    np.testing.assert_array_equal(cloud.fields["i"], [10 * r + c for r in range(3) for c in range(4)
                                                      if (r, c) not in bad])
    # a cloud that drops points is written as one row
    parts = to_pointcloud2_parts(cloud)
    assert (parts.height, parts.width) == (1, 9)


def test_organised_cloud_without_drops_stays_organised():
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]
    msg = _msg(fields, 12, [[{"x": r, "y": c, "z": 0} for c in range(3)] for r in range(2)], 3)
    parts = to_pointcloud2_parts(cloud_from_pointcloud2(msg))
    assert (parts.height, parts.width, parts.row_step) == (2, 3, 36)
    assert parts.data == msg.data


def test_empty_cloud():
    parts = to_pointcloud2_parts(Cloud(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)))
    cloud = cloud_from_pointcloud2(_parts_msg(parts))
    assert len(cloud) == 0 and cloud.colors.shape == (0, 3)


XYZ = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1)]


@pytest.mark.parametrize("change, message", [
    (dict(data=bytes(12 * 3 - 1)), r"data has 35 bytes, expected height 1 \* row_step 36 = 36"),
    (dict(fields=XYZ[1:]), r"no 'x' field; fields are \['y', 'z'\]"),
    (dict(fields=XYZ + [("t", 0, 42, 1)]), r"field 't' has unknown datatype 42"),
    (dict(fields=XYZ[:2] + [("z", 10, FLOAT32, 1)]), r"field 'z' at offset 10 with 4 bytes does not fit in point_step 12"),
    (dict(row_step=20), r"row_step 20 < width 3 \* point_step 12"),
])
def test_bad_messages_raise_named_errors(change, message):
    msg = SimpleNamespace(fields=XYZ, point_step=12, row_step=36, height=1, width=3, is_bigendian=False,
                          data=bytes(36), header=None)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(CloudFormatError, match=message):
        cloud_from_pointcloud2(msg)


def _ros_cloud(parts, frame_id, sec, nanosec):
    from sensor_msgs.msg import PointCloud2, PointField
    msg = PointCloud2()
    msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = frame_id, sec, nanosec
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in parts.fields]
    msg.height, msg.width, msg.point_step, msg.row_step = parts.height, parts.width, parts.point_step, parts.row_step
    msg.is_bigendian, msg.is_dense, msg.data = parts.is_bigendian, parts.is_dense, parts.data
    return msg


@pytest.mark.ros
def test_rclpy_serialised_bytes_decode_through_rosbags():
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message
    from rosbags.typesys import Stores, get_typestore
    rng = np.random.default_rng(1)
    cloud = Cloud(rng.normal(size=(500, 3)).astype(np.float32), rng.integers(0, 256, (500, 3), dtype=np.uint8),
                  {"label": rng.integers(0, 20, 500).astype(np.int32)})
    raw = serialize_message(_ros_cloud(to_pointcloud2_parts(cloud), "map", 5, 6))
    msg = get_typestore(Stores.ROS2_KILTED).deserialize_cdr(raw, "sensor_msgs/msg/PointCloud2")
    back = cloud_from_pointcloud2(msg)
    assert back.frame_id == "map" and back.stamp_ns == 5_000_000_006
    np.testing.assert_array_equal(back.points, cloud.points)
    np.testing.assert_array_equal(back.colors, cloud.colors)
    np.testing.assert_array_equal(back.fields["label"], cloud.fields["label"])


@pytest.mark.ros
def test_rosbags_serialised_bytes_decode_through_rclpy():
    pytest.importorskip("rclpy")
    from rclpy.serialization import deserialize_message
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import PointCloud2
    store = get_typestore(Stores.ROS2_KILTED)
    types = SimpleNamespace(**{k.split("/")[-1]: v for k, v in store.types.items()
                               if k in ("sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/PointField",
                                        "std_msgs/msg/Header", "builtin_interfaces/msg/Time")})
    cloud = Cloud(np.arange(30, dtype=np.float32).reshape(10, 3), np.full((10, 3), 7, np.uint8))
    parts = to_pointcloud2_parts(cloud)
    msg = types.PointCloud2(
        header=types.Header(stamp=types.Time(sec=1, nanosec=2), frame_id="odom"), height=parts.height,
        width=parts.width, fields=[types.PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in parts.fields],
        is_bigendian=False, point_step=parts.point_step, row_step=parts.row_step,
        data=np.frombuffer(parts.data, np.uint8), is_dense=True)
    ros_msg = deserialize_message(bytes(store.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2")), PointCloud2)
    back = cloud_from_pointcloud2(ros_msg)
    assert back.frame_id == "odom" and back.stamp_ns == 1_000_000_002
    np.testing.assert_array_equal(back.points, cloud.points)
    np.testing.assert_array_equal(back.colors, cloud.colors)
