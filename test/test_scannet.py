"""ScanNet scene folders: labels as ScanNet's scripts derive them, and the writer round trip."""
import json

import numpy as np
import plyfile
import pytest

from ssen_ros.classes import CLASS_NAMES, class_ids
from ssen_ros.data.dataset import CACHE_NAME, load_scene
from ssen_ros.io import CloudFormatError, read_cloud
from ssen_ros.io.scannet import LABELS_TSV, read_label_map, read_scannet_scene, write_scannet_scene

CHAIR, WALL, DESK, COUNTER = class_ids(["chair", "wall", "desk", "counter"])
TSV = ("id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n"
       "1\twall\twall\t1\t1\twall\n2\tchair\tchair\t1\t5\tchair\n3\tkitchen counter\tcounter\t1\t12\tcounter\n"
       "4\tdesk\tdesk\t1\t14\tdesk\n5\tlamp\tlamp\t1\t35\tlamp\n6\tunsorted\tthing\t1\t\t\n")


def _handmade_scene(root):
    """10 vertices in 6 over-segments (ids are arbitrary integers, as in ScanNet)."""
    folder = root / "scans" / "scene0042_00"
    folder.mkdir(parents=True)
    (root / "scans" / LABELS_TSV).write_text(TSV)
    vertex = np.zeros(10, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                 ("blue", "u1"), ("alpha", "u1")])
    vertex["x"] = np.arange(10)
    vertex["red"] = np.arange(10) * 20
    vertex["alpha"] = 255
    face = np.zeros(2, dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = [[0, 1, 2], [7, 8, 9]]
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex"),
                     plyfile.PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"})]
                    ).write(str(folder / "scene0042_00_vh_clean_2.ply"))
    seg = [100, 100, 205, 205, 7, 7, 31, 31, 999, 64]
    (folder / "scene0042_00_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": seg}))
    groups = [
        {"id": 0, "objectId": 0, "label": "chair", "segments": [100, 205]},
        {"id": 1, "objectId": 1, "label": "wall", "segments": [7, 12345]},  # 12345: no such segment
        {"id": 2, "objectId": 2, "label": "lamp", "segments": [31]},  # nyu40 35: not one of the 20
        {"id": 3, "objectId": 3, "label": "kitchen counter", "segments": [205]},  # overrides the chair
        {"id": 4, "objectId": 4, "label": "mystery", "segments": [999]},  # not in the tsv
    ]
    (folder / "scene0042_00.aggregation.json").write_text(json.dumps({"sceneId": "scannet.scene0042_00",
                                                                      "segGroups": groups}))
    return folder


def test_handmade_scene_labels_as_scannet_scripts(tmp_path):
    folder = _handmade_scene(tmp_path)
    scene = read_scannet_scene(folder)
    assert scene.name == "scene0042_00" and len(scene.cloud) == 10
    np.testing.assert_array_equal(scene.cloud.points[:, 0], np.arange(10))
    np.testing.assert_array_equal(scene.cloud.colors[:, 0], np.arange(10) * 20)
    np.testing.assert_array_equal(scene.faces, [[0, 1, 2], [7, 8, 9]])
    np.testing.assert_array_equal(scene.semantic, [CHAIR, CHAIR, COUNTER, COUNTER, WALL, WALL, -1, -1, -1, -1])
    np.testing.assert_array_equal(scene.instance, [0, 0, 3, 3, -1, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(read_cloud(folder).points, scene.cloud.points)


def test_label_map_skips_rows_without_nyu40id(tmp_path):
    (tmp_path / "l.tsv").write_text(TSV)
    assert read_label_map(tmp_path / "l.tsv") == {"wall": 1, "chair": 5, "kitchen counter": 12, "desk": 14, "lamp": 35}


def test_tsv_search_and_explicit_path(tmp_path):
    folder = _handmade_scene(tmp_path)
    moved = tmp_path / "elsewhere.tsv"
    (tmp_path / "scans" / LABELS_TSV).rename(moved)
    with pytest.raises(CloudFormatError, match=f"no {LABELS_TSV} in .*scene0042_00 or .*scans \\(it maps"):
        read_scannet_scene(folder)
    assert read_scannet_scene(folder, labels_tsv=moved).semantic[0] == CHAIR
    assert len(read_cloud(folder)) == len(read_scannet_scene(folder, labels_tsv=moved).cloud)  # no labels needed


def test_unannotated_scene_and_bad_annotations(tmp_path):
    folder = _handmade_scene(tmp_path)
    segs = folder / "scene0042_00_vh_clean_2.0.010000.segs.json"
    segs.write_text(json.dumps({"segIndices": [1, 2, 3]}))
    with pytest.raises(CloudFormatError, match="3 segIndices for the 10 vertices of scene0042_00_vh_clean_2.ply"):
        read_scannet_scene(folder)
    segs.write_text("{not json")
    with pytest.raises(CloudFormatError, match="segs.json: not valid JSON"):
        read_scannet_scene(folder)
    segs.write_text(json.dumps({"segIndices": "abc"}))
    with pytest.raises(CloudFormatError, match="segs.json: segIndices is not a list of integers"):
        read_scannet_scene(folder)
    segs.unlink()
    with pytest.raises(CloudFormatError, match="annotation file scene0042_00_vh_clean_2.0.010000.segs.json is missing"):
        read_scannet_scene(folder)
    (folder / "scene0042_00.aggregation.json").unlink()
    scene = read_scannet_scene(folder)  # a test-split scene: mesh only
    assert scene.semantic is None and scene.instance is None and len(scene.cloud) == 10
    with pytest.raises(CloudFormatError, match="no mesh scene0043_00_vh_clean_2.ply"):
        read_scannet_scene(folder, scene_name="scene0043_00")


def _room(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    semantic = rng.choice([-1] + class_ids(["wall", "floor"]), n)  # background and unlabelled
    instance = np.full(n, -1)
    objects = rng.integers(0, 8, n)  # 8 objects, each one class
    object_class = np.array(class_ids(["chair", "table", "sofa", "bed", "desk", "toilet", "sink", "cabinet"]))
    fg = rng.random(n) < 0.6
    semantic[fg], instance[fg] = object_class[objects[fg]], 10 + 3 * objects[fg]
    return rng.normal(size=(n, 3)), rng.integers(0, 256, (n, 3), dtype=np.uint8), semantic, instance


@pytest.mark.parametrize("with_segments", [False, True])
def test_writer_round_trip(tmp_path, with_segments):
    points, colors, semantic, instance = _room()
    bg = np.isin(semantic, class_ids(["wall", "floor"]))
    instance[(semantic == WALL) & (np.arange(len(semantic)) % 2 == 0)] = 99  # a wall object with its own id
    faces = np.random.default_rng(2).integers(0, len(points), (500, 3))
    segments = None
    if with_segments:  # over-segments: split each object in two by the sign of x
        key = (semantic + 1) * 1000 + instance + 1
        segments = np.unique(key * 2 + (points[:, 0] > 0), return_inverse=True)[1] * 7 + 3
    files = write_scannet_scene(tmp_path / "scene0001_00", "scene0001_00", points, colors, semantic, instance,
                                faces=faces, segments=segments)
    assert {p.name for p in files.values()} == {"scene0001_00_vh_clean_2.ply", "scene0001_00.aggregation.json",
                                                "scene0001_00_vh_clean_2.0.010000.segs.json", LABELS_TSV}
    scene = read_scannet_scene(tmp_path / "scene0001_00")
    np.testing.assert_array_equal(scene.cloud.points, points.astype(np.float32))
    np.testing.assert_array_equal(scene.cloud.colors, colors)
    np.testing.assert_array_equal(scene.faces, faces)
    np.testing.assert_array_equal(scene.semantic, semantic)
    expected_instance = np.where(bg | (semantic < 0), -1, instance)  # walls/floors carry no instance
    np.testing.assert_array_equal(scene.instance, expected_instance)
    aggregation = json.loads(files["aggregation"].read_text())
    assert {g["label"] for g in aggregation["segGroups"]} <= set(CLASS_NAMES)
    if with_segments:
        assert json.loads(files["segments"].read_text())["segIndices"] == segments.tolist()


def test_a_scene_is_cached_in_one_whole_file_that_the_next_load_reads(tmp_path):
    points, colors, semantic, instance = _room()
    folder = tmp_path / "scene0001_00"
    files = write_scannet_scene(folder, "scene0001_00", points, colors, semantic, instance)
    first = load_scene(folder)
    assert [p.name for p in folder.iterdir() if p.name.startswith(CACHE_NAME)] == [CACHE_NAME]
    files["mesh"].unlink()  # read from the cache alone now
    again = load_scene(folder)
    for name in ("points", "colors", "semantic", "instance"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))


def test_writer_rejects_inconsistent_labels(tmp_path):
    points, colors = np.zeros((3, 3)), np.zeros((3, 3), np.uint8)
    with pytest.raises(ValueError, match=r"instance classes \['chair'\] have instance -1"):
        write_scannet_scene(tmp_path, "s", points, colors, [CHAIR, WALL, -1], [-1, -1, -1])
    with pytest.raises(ValueError, match=r"instance\(s\) \[4\] have vertices of several classes"):
        write_scannet_scene(tmp_path, "s", points, colors, [CHAIR, DESK, -1], [4, 4, -1])
    with pytest.raises(ValueError, match="some segment holds vertices of several objects"):
        write_scannet_scene(tmp_path, "s", points, colors, [CHAIR, CHAIR, -1], [1, 2, -1], segments=[5, 5, 6])
    with pytest.raises(ValueError, match=r"semantic ids must be -1..19, got -1..20"):
        write_scannet_scene(tmp_path, "s", points, colors, [20, 0, -1], [1, 2, -1])
