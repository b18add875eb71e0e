"""sensor_msgs/PointCloud2 messages from rosbag2 bags (sqlite3 ``.db3`` or ``.mcap`` storage).

Read with ``rosbags`` (pure Python, no ROS install needed), which deserialises the
same CDR bytes rclpy writes; each message is decoded by ``ssen_ros.io.pointcloud2``. Message
types come from the bag's own definitions when it stores them, else from the Kilted typestore.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.typesys import Stores, get_typestore

from ssen_ros.io.cloud import Cloud, CloudFormatError
from ssen_ros.io.pointcloud2 import cloud_from_pointcloud2

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"


def _bag_dir(path: Path) -> Path:
    """The bag directory (the one with metadata.yaml), given it or one of its files."""
    for candidate in (path, path.parent):
        if candidate.is_dir() and (candidate / "metadata.yaml").is_file():
            return candidate
    raise CloudFormatError(f"{path}: not a rosbag2 bag (no metadata.yaml in it or beside it)")


def _open(path: "str | Path") -> AnyReader:
    reader = AnyReader([_bag_dir(Path(path))], default_typestore=get_typestore(Stores.ROS2_KILTED))
    try:
        reader.open()
    except AnyReaderError as err:
        raise CloudFormatError(f"{path}: cannot open bag: {err}") from None
    return reader


def bag_topics(path: "str | Path") -> "dict[str, str]":
    """Topic name -> message type of every topic in the bag."""
    reader = _open(path)
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def read_bag_clouds(path: "str | Path", topic: str) -> Iterator[Cloud]:
    """Iterate over the PointCloud2 messages of ``topic`` as ``Cloud`` records, in bag time order.

    ``path`` is the bag directory or a file in it. A topic that is absent or not a
    PointCloud2 raises ``CloudFormatError`` at once, listing the bag's PointCloud2 topics and
    all its topics.
    """
    reader = _open(path)
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections or any(c.msgtype != POINTCLOUD2 for c in connections):
        found = f"is a {connections[0].msgtype}" if connections else "is not in the bag"
        clouds = sorted(c.topic for c in reader.connections if c.msgtype == POINTCLOUD2)
        every = sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections)
        reader.close()
        raise CloudFormatError(f"{path}: topic {topic!r} {found}; PointCloud2 topics: {clouds}; "
                               f"all topics: {every}")
    return _clouds(reader, connections, f"{path} {topic}")


def _clouds(reader: AnyReader, connections: list, source: str) -> Iterator[Cloud]:
    try:
        for index, (connection, _, raw) in enumerate(reader.messages(connections=connections)):
            try:
                msg = reader.deserialize(raw, connection.msgtype)
            except Exception as err:  # rosbags raises its own errors (and struct/index errors) for bad bytes
                raise CloudFormatError(f"{source} message {index}: cannot deserialize a "
                                       f"{connection.msgtype} ({type(err).__name__}: {err})") from None
            yield cloud_from_pointcloud2(msg, source=f"{source} message {index}")
    finally:
        reader.close()
