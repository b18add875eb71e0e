"""rosbag2 (sqlite3) and MCAP bags written with rosbags' Writer, read back as Clouds."""
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from ssen_ros.io import Cloud, CloudFormatError
from ssen_ros.io.bag import bag_topics, read_bag_clouds
from ssen_ros.io.pointcloud2 import to_pointcloud2_parts

STORE = get_typestore(Stores.ROS2_KILTED)
T = {name.split("/")[-1]: cls for name, cls in STORE.types.items() if name in (
    "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/PointField", "std_msgs/msg/Header",
    "builtin_interfaces/msg/Time", "std_msgs/msg/String")}


def _message(cloud, sec):
    parts = to_pointcloud2_parts(cloud)
    return T["PointCloud2"](
        header=T["Header"](stamp=T["Time"](sec=sec, nanosec=7), frame_id="map"), height=parts.height,
        width=parts.width, fields=[T["PointField"](name=n, offset=o, datatype=d, count=c) for n, o, d, c in parts.fields],
        is_bigendian=False, point_step=parts.point_step, row_step=parts.row_step,
        data=np.frombuffer(parts.data, np.uint8), is_dense=True)


def _clouds():
    rng = np.random.default_rng(0)
    return [Cloud(rng.normal(size=(100 + i, 3)).astype(np.float32), rng.integers(0, 256, (100 + i, 3), dtype=np.uint8))
            for i in range(3)]


def _write_bag(path, storage, clouds):
    with Writer(path, version=9, storage_plugin=storage) as writer:
        points = writer.add_connection("/map", "sensor_msgs/msg/PointCloud2", typestore=STORE)
        other = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=STORE)
        for i, cloud in enumerate(clouds):
            writer.write(points, (i + 1) * 10**9, STORE.serialize_cdr(_message(cloud, i + 1), "sensor_msgs/msg/PointCloud2"))
            writer.write(other, (i + 1) * 10**9 + 1, STORE.serialize_cdr(T["String"](data="hi"), "std_msgs/msg/String"))


@pytest.mark.parametrize("storage, suffix", [(StoragePlugin.SQLITE3, ".db3"), (StoragePlugin.MCAP, ".mcap")])
def test_read_clouds_from_both_storages(tmp_path, storage, suffix):
    clouds = _clouds()
    bag = tmp_path / "bag"
    _write_bag(bag, storage, clouds)
    assert bag_topics(bag) == {"/map": "sensor_msgs/msg/PointCloud2", "/chatter": "std_msgs/msg/String"}
    data_file = next(bag.glob(f"*{suffix}"))
    for path in (bag, data_file):  # the bag folder or its data file
        back = list(read_bag_clouds(path, "/map"))
        assert len(back) == len(clouds)
        for i, (got, sent) in enumerate(zip(back, clouds)):
            np.testing.assert_array_equal(got.points, sent.points)
            np.testing.assert_array_equal(got.colors, sent.colors)
            assert got.frame_id == "map" and got.stamp_ns == (i + 1) * 10**9 + 7


def test_wrong_topic_lists_what_is_there(tmp_path):
    bag = tmp_path / "bag"
    _write_bag(bag, StoragePlugin.SQLITE3, _clouds()[:1])
    with pytest.raises(CloudFormatError, match=r"topic '/cloud' is not in the bag; PointCloud2 topics: \['/map'\]; "
                                               r"all topics: \['/chatter \(std_msgs/msg/String\)', '/map .*'\]"):
        read_bag_clouds(bag, "/cloud")
    with pytest.raises(CloudFormatError, match=r"topic '/chatter' is a std_msgs/msg/String"):
        read_bag_clouds(bag, "/chatter")


def test_a_message_that_does_not_deserialize_is_named(tmp_path):
    bag = tmp_path / "bag"
    good = STORE.serialize_cdr(_message(_clouds()[0], 1), "sensor_msgs/msg/PointCloud2")
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        points = writer.add_connection("/map", "sensor_msgs/msg/PointCloud2", typestore=STORE)
        writer.write(points, 10**9, good)
        writer.write(points, 2 * 10**9, good[:40])  # cut short
    clouds = read_bag_clouds(bag, "/map")
    assert len(next(clouds)) == 100
    with pytest.raises(CloudFormatError, match=r"bag /map message 1: cannot deserialize a sensor_msgs/msg/PointCloud2"):
        next(clouds)


def test_not_a_bag(tmp_path):
    (tmp_path / "x.mcap").write_bytes(b"nothing")
    with pytest.raises(CloudFormatError, match="not a rosbag2 bag"):
        read_bag_clouds(tmp_path / "x.mcap", "/map")
    (tmp_path / "metadata.yaml").write_text("garbage: [")
    with pytest.raises(CloudFormatError, match="cannot open bag"):
        bag_topics(tmp_path)
