"""PLY via plyfile: ascii/binary round trips, ScanNet-style meshes, extra int fields, bad files."""
import numpy as np
import plyfile
import pytest

from ssen_ros.io import Cloud, CloudFormatError, read_cloud
from ssen_ros.io.ply import read_ply, read_ply_mesh, write_ply


def _cloud(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return Cloud(rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 256, (n, 3), dtype=np.uint8),
                 {"alpha": np.full(n, 255, np.uint8), "label": rng.integers(-1, 20, n),
                  "instance": rng.integers(-1, 50, n).astype(np.int32), "score": rng.random(n)})


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip_with_faces_and_int_fields(tmp_path, binary):
    cloud = _cloud()
    faces = np.random.default_rng(1).integers(0, len(cloud), (300, 3))
    path = write_ply(tmp_path / "m.ply", cloud, faces, binary=binary)
    back, back_faces = read_ply_mesh(path)
    np.testing.assert_array_equal(back.points, cloud.points)
    np.testing.assert_array_equal(back.colors, cloud.colors)
    np.testing.assert_array_equal(back_faces, faces)
    assert list(back.fields) == ["alpha", "label", "instance", "score"]
    assert back.fields["label"].dtype == np.int32  # int64 stored as PLY int
    for name, values in cloud.fields.items():
        np.testing.assert_array_equal(back.fields[name], values)
    np.testing.assert_array_equal(read_cloud(path).points, cloud.points)


def test_scannet_vh_clean_2_layout_read_by_plyfile_directly(tmp_path):
    """The file we write has ScanNet's header: float xyz, uchar rgba, list uchar int vertex_indices."""
    cloud = _cloud(10)
    cloud.fields = {"alpha": cloud.fields["alpha"]}
    write_ply(tmp_path / "scene0000_00_vh_clean_2.ply", cloud, np.array([[0, 1, 2], [2, 3, 4]]))
    ply = plyfile.PlyData.read(str(tmp_path / "scene0000_00_vh_clean_2.ply"))
    assert [(p.name, p.val_dtype) for p in ply["vertex"].properties] == [
        ("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    face_prop = ply["face"].properties[0]
    assert (face_prop.name, face_prop.len_dtype, face_prop.val_dtype) == ("vertex_indices", "u1", "i4")
    np.testing.assert_array_equal(ply["vertex"]["red"], cloud.colors[:, 0])


def test_other_tools_polygons_and_float64(tmp_path):
    """A PLY from another tool: double xyz, no colour, a quad face, 'vertex_index' spelling."""
    vertex = np.array([(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 1.0, 0.0)],
                      dtype=[("x", "f8"), ("y", "f8"), ("z", "f8")])
    face = np.empty(1, dtype=[("vertex_index", "O")])
    face[0] = (np.array([0, 1, 2, 3], np.int32),)
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex"),
                     plyfile.PlyElement.describe(face, "face")]).write(str(tmp_path / "quad.ply"))
    cloud = read_ply(tmp_path / "quad.ply")
    assert cloud.points.dtype == np.float64 and cloud.colors is None and len(cloud) == 4
    with pytest.raises(CloudFormatError, match=r"only triangle faces are supported, found faces of sizes \[4\]"):
        read_ply_mesh(tmp_path / "quad.ply")


def test_mesh_without_faces(tmp_path):
    cloud = _cloud(5)
    _, faces = read_ply_mesh(write_ply(tmp_path / "p.ply", cloud))
    assert faces.shape == (0, 3)


@pytest.mark.parametrize("binary", [True, False])
def test_truncated_file_names_file_and_size(tmp_path, binary):
    path = write_ply(tmp_path / "t.ply", _cloud(), np.zeros((50, 3), int), binary=binary)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(CloudFormatError, match=rf"t.ply \({len(raw) // 2} bytes\): .*(early end-of-file|early end-of-line)"):
        read_ply(path)


def test_not_a_ply_and_bad_faces(tmp_path):
    (tmp_path / "x.ply").write_text("hello\n")
    with pytest.raises(CloudFormatError, match="not a readable PLY file"):
        read_ply(tmp_path / "x.ply")
    with pytest.raises(ValueError, match=r"face indices range 0..5 for 5 vertices"):
        write_ply(tmp_path / "y.ply", _cloud(5), np.array([[0, 1, 5]]))
    big = _cloud(2)
    big.fields = {"id": np.array([0, 2**40])}
    with pytest.raises(ValueError, match="field 'id' has values outside int32"):
        write_ply(tmp_path / "z.ply", big)
