"""Furniture libraries: catalog parsing, OBJ/MTL meshes, Sweet Home 3D placement, class table."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ssen_ros.classes import CLASS_NAMES
from ssen_ros.synthetic import furniture as fu

CATALOG = """# a comment
id=Test#Lib
license=Public domain
id#1=Test#box
name#1=Long \\
  box
category#1=Misc
model#1=/lib/box/box.obj
width#1=200
depth#1=100
height#1=50
elevation#1=10
doorOrWindow#1=false
creator#1=Caf\\u00e9 maker
id#2=Test#turned
name#2=Turned
model#2=/lib/box/box.obj
width#2=200
depth#2=100
height#2=50
modelRotation#2=1 0 0 0 0 1 0 -1 0
"""

# A unit cube (0..1 in X, Y, Z) with quads; the +Z face (the front) uses a textured material.
OBJ = """mtllib box.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 0 0 1
v 1 0 1
v 1 1 1
v 0 1 1
vt 0 0
vt 1 0
vt 1 1
vt 0 1
usemtl red
f 1 2 3 4
f 1 5 6 2
f 2 6 7 3
f 3 7 8 4
f 4 8 5 1
usemtl tex
f -4/1 -3/2 -2/3 -1/4
l 1 2
"""
MTL = """newmtl red
Kd 1.0 0.0 0.0
newmtl tex
Kd 0.5 0.5 0.5
map_Kd green.png
d 1.0
"""


def _png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def library(tmp_path):
    path = tmp_path / "Test.sh3f"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("PluginFurnitureCatalog.properties", CATALOG.encode("iso-8859-1"))
        zf.writestr("lib/box/box.obj", OBJ)
        zf.writestr("lib/box/box.mtl", MTL)
        zf.writestr("lib/box/green.png", _png((0, 200, 0)))
    return tmp_path


def test_catalog_entries(library):
    box, turned = fu.read_catalog(library / "Test.sh3f")
    assert box.key == "box" and box.name == "Long box" and box.creator == "Café maker"
    assert (box.width, box.depth, box.height, box.elevation) == (2.0, 1.0, 0.5, 0.1)
    assert box.model_path == "lib/box/box.obj" and box.licence == "Public domain"
    assert turned.model_rotation == (1, 0, 0, 0, 0, 1, 0, -1, 0) and turned.elevation == 0.0


def test_mesh_is_metres_z_up_centred_and_scaled(library):
    box = fu.find_entry("Test", "box", library)
    mesh = fu.load_mesh(box, library)
    assert len(mesh.faces) == 12  # six quads, fan-triangulated; the line is dropped
    np.testing.assert_allclose(mesh.vertices.min(axis=0), [-1.0, -0.5, 0.0])
    np.testing.assert_allclose(mesh.vertices.max(axis=0), [1.0, 0.5, 0.5])
    # The OBJ front (+Z) becomes -y; its faces are textured green, the rest red.
    normals = mesh.face_normals()
    front = np.isclose(normals[:, 1], -1) | np.isclose(normals[:, 1], 1)
    front &= np.isclose(mesh.vertices[mesh.faces][:, :, 1].mean(axis=1), -0.5)
    assert front.sum() == 2
    colors = mesh.colors_at(np.arange(len(mesh.faces)), np.full((len(mesh.faces), 3), 1 / 3))
    np.testing.assert_array_equal(colors[front], [[0, 200, 0]] * 2)
    np.testing.assert_array_equal(colors[~front], [[255, 0, 0]] * 10)
    assert mesh.face_areas().sum() == pytest.approx(2 * (2 * 1 + 2 * 0.5 + 1 * 0.5))


def test_model_rotation_is_applied_before_scaling(library):
    turned = fu.find_entry("Test", "turned", library)
    mesh = fu.load_mesh(turned, library)
    # Still scaled to the catalog box: rotation first, then fit to width x depth x height.
    np.testing.assert_allclose(np.ptp(mesh.vertices, axis=0), [2.0, 1.0, 0.5])
    # The matrix (row-major, v' = M v) turns the textured OBJ +Z face to +Y, the top (z = 0.5).
    # (v' = M v is Sweet Home 3D's convention: it alone scales the library's rotated models
    # uniformly to their catalog size.)
    normals = mesh.face_normals()
    textured = mesh.face_material == [m.name for m in mesh.materials].index("tex")
    assert np.allclose(np.abs(normals[textured, 2]), 1)
    assert np.allclose(mesh.vertices[mesh.faces[textured]][..., 2], 0.5)


def test_properties_parser_edge_cases():
    props = fu._read_properties("a=1\n! bang comment\nb : two words\nc=x\\\\\nd=\\u0041\\=\n")
    assert props == {"a": "1", "b": "two words", "c": "x\\", "d": "A="}


def test_bad_inputs_name_the_file(tmp_path, library):
    with pytest.raises(fu.FurnitureError, match="Nope.sh3f not found"):
        fu.library_path("Nope", tmp_path)
    (tmp_path / "Broken.sh3f").write_bytes(b"not a zip")
    with pytest.raises(fu.FurnitureError, match="Broken.sh3f: not a furniture library"):
        fu.read_catalog(tmp_path / "Broken.sh3f")
    with pytest.raises(fu.FurnitureError, match="no faces"):
        fu.parse_obj("v 0 0 0\n", {})
    with pytest.raises(fu.FurnitureError, match="face index out of range"):
        fu.parse_obj("v 0 0 0\nv 1 0 0\nf 1 2 9\n", {})
    table = tmp_path / "classes.csv"
    table.write_text("# c\nlibrary,model,name,scannet_class,placement,licence,note\n"
                     "Test,box,Box,bench,free,CC0,\n")
    with pytest.raises(fu.FurnitureError, match=r"classes.csv:2: unknown ScanNet class 'bench'"):
        fu.load_class_table(table, library)
    table.write_text("library,model,name,scannet_class,placement,licence,note\n"
                     "Test,box,Box,table,floating,CC0,\n")
    with pytest.raises(fu.FurnitureError, match="unknown placement 'floating'"):
        fu.load_class_table(table, library)
    table.write_text("library,model,name,scannet_class,placement,licence,note\n"
                     "Test,box,Box,table,free,CC0,\nTest,box,Box,,,CC0,excluded\n")
    (spec,) = fu.load_class_table(table, library)
    assert spec.label == CLASS_NAMES.index("table") and spec.placement == "free"
    table.write_text("library,model,name,scannet_class,placement,licence,note\n"
                     "Test,box,Box,clutter,top,CC0,\n")
    (spec,) = fu.load_class_table(table, library)
    assert spec.label == -1 and spec.placement == "top"      # a prop: the ignore label


needs_library = pytest.mark.skipif(not (fu.FURNITURE_DIR / "BlendSwap-CC-0.sh3f").is_file(),
                                   reason="Debian package sweethome3d-furniture not installed")


@needs_library
def test_the_class_table_covers_the_cc0_library_and_loads():
    specs = fu.load_class_table()
    rows = [l for l in fu.CLASS_TABLE.read_text().splitlines()
            if l.startswith("BlendSwap-CC-0,")]
    cc0 = fu.read_catalog(fu.library_path("BlendSwap-CC-0"))
    assert len(rows) == len(cc0) == 175      # every CC0 model is listed, used or excluded
    assert {s.licence for s in specs} <= {"CC0", "CC-BY-3.0"}
    names = {CLASS_NAMES[s.label] for s in specs}
    for needed in ("chair", "table", "bed", "sofa", "cabinet", "door", "window", "curtain", "toilet"):
        assert needed in names
    chair = next(s for s in specs if s.entry.key == "oakChair")
    mesh = fu.load_mesh(chair.entry)
    np.testing.assert_allclose(np.ptp(mesh.vertices, axis=0),
                               [chair.entry.width, chair.entry.depth, chair.entry.height], atol=1e-9)


@needs_library
def test_every_cc_by_model_in_use_is_credited():
    credits = (Path(__file__).resolve().parents[1] / "docs" / "attribution.md").read_text()
    for spec in fu.load_class_table():
        if spec.licence != "CC0":
            assert f"| {spec.entry.key} | {spec.entry.name} | {spec.entry.creator} |" in credits, spec.entry.key
