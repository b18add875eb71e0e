"""Plain values -> ROS types: the labelled PointCloud2, the InstanceArray, QoS profiles.

The labelled cloud has fields ``x y z`` (FLOAT32), ``rgb`` (FLOAT32 holding ``r<<16|g<<8|b``,
which RViz's PointCloud2 display shows in colour with no settings changed: its RGB8 colour
transformer, rviz_default_plugins' point_cloud_transformers.cpp), ``label`` (INT32 semantic train
id, -1 none; an instance's points carry its class), ``instance`` (INT32 stable instance id, -1
none) and ``score`` (FLOAT32, the instance's score, 0 outside instances). Points are coloured by
instance (one colour per stable id, the same the markers use), background points by their class
colour (ScanNet palette), and unlabelled points (outside the crop box) grey. It is returned
serialised (CDR, ``io.cdr``), as rclpy's ``Publisher.publish`` sends bytes as they are
(``publish_raw``) instead of converting a message to C and serialising it. Other clouds are
``ssen_ros.io.pointcloud2``'s pieces copied into rclpy messages. ``qos_profile`` turns the QoS
parameter strings (shared by the node and the player) into an rclpy profile.
"""
from __future__ import annotations

import colorsys
from typing import Mapping, Sequence

import numpy as np
from geometry_msgs.msg import Point, Vector3
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from ssen_ros.classes import CLASS_COLORS
from ssen_ros.instances import Instance
from ssen_ros.io.cdr import new_pointcloud2
from ssen_ros.io.cloud import Cloud
from ssen_ros.io.pointcloud2 import FLOAT32, INT32, PointCloud2Parts, to_pointcloud2_parts
from ssen_ros.msg import Instance as InstanceMsg
from ssen_ros.msg import InstanceArray

UNLABELLED_COLOR = (128, 128, 128)
_GOLDEN = 0.618033988749895


def qos_profile(reliability: str = "reliable", durability: str = "transient_local", depth: int = 1
                ) -> QoSProfile:
    """KEEP_LAST ``depth`` with 'reliable'|'best_effort' and 'transient_local'|'volatile'."""
    try:
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy[reliability.upper()],
                          durability=DurabilityPolicy[durability.upper()])
    except KeyError as exc:
        raise ValueError(f"QoS: unknown policy {exc} (reliability: reliable|best_effort, "
                         f"durability: transient_local|volatile)") from None


def instance_color(instance_id: int) -> tuple[int, int, int]:
    """A saturated colour per id; successive ids are far apart in hue (golden-ratio steps)."""
    r, g, b = colorsys.hsv_to_rgb((instance_id * _GOLDEN) % 1.0, 0.8, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _point_rows(semantic: np.ndarray, point_ids: np.ndarray, instances: Sequence[Instance]
                ) -> "tuple[np.ndarray, list[Instance]]":
    """Each point's row of a small table (grey, the classes, then ``instances`` by id) and the
    instances of the table's rows, in that order."""
    ordered = sorted(instances, key=lambda i: i.id)
    ids = np.array([i.id for i in ordered], dtype=np.int64)
    point_ids = np.asarray(point_ids, dtype=np.int64)
    top = int(ids[-1]) if len(ids) else -1
    first = 1 + len(CLASS_COLORS)  # the instances' first row
    if top < 4 * len(point_ids) + 65536:  # ids -> rows through a lookup table, not a search
        rows = np.zeros(top + 2, dtype=np.int32)
        rows[ids] = np.arange(first, first + len(ids), dtype=np.int32)
        own = rows[point_ids]  # -1 reads the last entry; those points are not in instances
    else:
        own = first + np.searchsorted(ids, point_ids)
    return np.where(point_ids >= 0, own, np.asarray(semantic) + 1), ordered


def pointcloud2_message(parts: PointCloud2Parts, header: Header) -> PointCloud2:
    """A PointCloud2 from the pieces ``ssen_ros.io.pointcloud2`` encodes."""
    msg = PointCloud2(header=header, height=parts.height, width=parts.width,
                      point_step=parts.point_step, row_step=parts.row_step,
                      is_bigendian=parts.is_bigendian, is_dense=parts.is_dense)
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in parts.fields]
    msg.data = parts.data  # an array('B') is taken as it is; bytes are copied without a Python loop
    return msg


def cloud_message(cloud: Cloud, header: Header) -> PointCloud2:
    """Any ``Cloud`` as a PointCloud2 (used by the player)."""
    return pointcloud2_message(to_pointcloud2_parts(cloud), header)


LABELED_FIELDS = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1),
                  ("rgb", 12, FLOAT32, 1), ("label", 16, INT32, 1), ("instance", 20, INT32, 1),
                  ("score", 24, FLOAT32, 1)]
"""The labelled cloud's layout: 7 little-endian 4-byte columns, no padding."""

_TAIL = np.dtype([("rgb", "<u4"), ("label", "<i4"), ("instance", "<i4"), ("score", "<f4")])
"""The labelled cloud's columns after x y z: a function of the point's table row alone."""
_HEADER_BYTES = 512
"""More than the serialised message takes besides its points and frame id (stamp, sizes, the
seven field descriptions, CDR padding)."""
_LAYOUT = np.dtype({"names": ["xyz", "tail"], "formats": [("<f4", (3,)), "V16"], "offsets": [0, 12]})


class LabeledCloudEncoder:
    """``encoder(points, semantic, point_ids, instances, header, ids=None) -> bytes``: the
    labelled cloud described in the module docstring, one row of ``len(points)`` points,
    serialised as ``serialize_message`` would (padding aside: zero here); ``point_ids`` are the
    ``Instance.id`` of ``instances`` (or -1), and a point of an instance is labelled with its
    class. ``ids`` maps those to the ids the cloud carries (the node's stable ids), so that the
    points need no relabelling pass of their own; without it they carry their own.

    Everything after x y z depends only on the point's row of a small table (grey, a class, an
    instance), so it is one 16-byte gather from that table. The points are written through a
    numpy view of a serialised buffer (``io.cdr.new_pointcloud2``), not copied into a message and
    then serialised, and the buffer is returned as ``bytes``, which ``Publisher.publish`` takes.
    The encoder keeps that buffer for the next map, so a map costs no page faults but those of
    the returned ``bytes``; it is made a quarter larger than the map that needed it, so that a
    SLAM map that grows by a few points per update keeps using it."""

    _buffer: "np.ndarray | None" = None

    def __call__(self, points: np.ndarray, semantic: np.ndarray, point_ids: np.ndarray,
                 instances: Sequence[Instance], header: Header,
                 ids: "Mapping[int, int] | None" = None) -> bytes:
        n = len(points)
        row, ordered = _point_rows(semantic, point_ids, instances)
        shown = [i.id if ids is None else ids[i.id] for i in ordered]
        colors = np.concatenate([[UNLABELLED_COLOR], CLASS_COLORS,
                                 np.array([instance_color(i) for i in shown], dtype=np.int64).reshape(-1, 3)])
        colors = colors.astype(np.uint32)
        tail = np.zeros(len(colors), dtype=_TAIL)
        tail["rgb"] = np.uint32(255 << 24) | (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]
        tail["label"] = np.concatenate([[-1], np.arange(len(CLASS_COLORS)), [i.class_id for i in ordered]])
        tail["instance"] = np.concatenate([np.full(1 + len(CLASS_COLORS), -1), shown])
        tail["score"] = np.concatenate([np.zeros(1 + len(CLASS_COLORS)), [i.score for i in ordered]])
        step = 4 * len(LABELED_FIELDS)
        need = step * n + _HEADER_BYTES + len(header.frame_id.encode())
        if self._buffer is None or len(self._buffer) < need:
            self._buffer = np.empty(need + need // 4, dtype=np.uint8)  # every byte used is written
        raw, data = new_pointcloud2(header.frame_id, header.stamp.sec, header.stamp.nanosec, 1, n,
                                    LABELED_FIELDS, False, step, step * n, True, self._buffer)
        out = np.frombuffer(data, dtype=_LAYOUT)
        out["xyz"] = points
        out["tail"] = tail.view("V16")[row]
        return raw.tobytes()


def _point(v: Sequence[float]) -> Point:
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _vector(v: Sequence[float]) -> Vector3:
    return Vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def instance_message(inst: Instance) -> InstanceMsg:
    """One ``ssen_ros/Instance`` (field meanings: msg/Instance.msg)."""
    return InstanceMsg(id=int(inst.id), class_id=int(inst.class_id), class_name=inst.class_name,
                       score=float(inst.score), centroid=_point(inst.centroid),
                       aabb_center=_point(inst.aabb_center), aabb_size=_vector(inst.aabb_size),
                       obb_center=_point(inst.obb_center), obb_yaw=float(inst.obb_yaw),
                       obb_size=_vector(inst.obb_size), point_count=int(inst.point_count))


def instance_array(instances: Sequence[Instance], header: Header, processing_time: float
                   ) -> InstanceArray:
    """All instances of one map, in the map's frame and stamp, with the node's processing time."""
    return InstanceArray(header=header, instances=[instance_message(i) for i in instances],
                         processing_time=float(processing_time))
