"""VoteNet's ScanNet layout (_vert/_sem_label/_ins_label arrays), read as scenes for scoring."""
import numpy as np
import pytest

from ssen_ros.classes import class_ids
from ssen_ros.data.dataset import find_scenes, load_scene
from ssen_ros.io import CloudFormatError
from ssen_ros.io.votenet import read_votenet_scene

CHAIR, WALL, TABLE = class_ids(["chair", "wall", "table"])


def _write(folder, name, n=6, sem=(5, 5, 1, 7, 35, 0), ins=(3, 3, 1, 9, 4, 0)):
    vert = np.zeros((n, 6), np.float32)
    vert[:, 0] = np.arange(n)
    vert[:, 3:] = [[10.4, 200.0, 255.0]] * n
    np.save(folder / f"{name}_vert.npy", vert)
    np.save(folder / f"{name}_sem_label.npy", np.asarray(sem, np.uint32))
    np.save(folder / f"{name}_ins_label.npy", np.asarray(ins, np.uint32))


def test_labels_map_to_train_ids_and_background_has_no_instance(tmp_path):
    _write(tmp_path, "scene0007_00")
    scene = read_votenet_scene(tmp_path / "scene0007_00_vert.npy")
    assert scene.name == "scene0007_00"
    np.testing.assert_array_equal(scene.cloud.points[:, 0], np.arange(6))
    np.testing.assert_array_equal(scene.cloud.colors[0], [10, 200, 255])
    # nyu40 5 chair, 1 wall, 7 table, 35 lamp (not one of the 20), 0 unannotated
    np.testing.assert_array_equal(scene.semantic, [CHAIR, CHAIR, WALL, TABLE, -1, -1])
    # objectId + 1 -> objectId; the wall and the ignored points keep no instance
    np.testing.assert_array_equal(scene.instance, [2, 2, -1, 8, -1, -1])


def test_find_scenes_lists_votenet_files_and_folders_alike(tmp_path):
    _write(tmp_path, "scene0002_00")
    _write(tmp_path, "scene0001_00")
    scenes = find_scenes(tmp_path)
    assert [p.name for p in scenes] == ["scene0001_00_vert.npy", "scene0002_00_vert.npy"]
    scene = load_scene(scenes[0])
    assert scene.name == "scene0001_00" and scene.points.dtype == np.float32 and len(scene.semantic) == 6


def test_mismatched_or_missing_labels_name_the_file(tmp_path):
    _write(tmp_path, "scene0003_00", sem=(5, 5, 1))
    with pytest.raises(CloudFormatError, match="scene0003_00_vert.npy: 6 points but 3 semantic"):
        read_votenet_scene(tmp_path / "scene0003_00_vert.npy")
    (tmp_path / "scene0003_00_ins_label.npy").unlink()
    with pytest.raises(CloudFormatError, match="scene0003_00_ins_label.npy: missing"):
        read_votenet_scene(tmp_path / "scene0003_00_vert.npy")
