"""Real furniture models from Sweet Home 3D libraries (``*.sh3f``): catalog, meshes, colours.

A ``.sh3f`` file is a zip holding ``PluginFurnitureCatalog.properties`` (a Java properties
file: one ``key#N=value`` per model) and one OBJ + MTL (+ textures) per model. Sweet Home 3D
places a model by rotating it with its ``modelRotation`` (a row-major 3x3 matrix), centring
its bounding box and scaling it to the catalog ``width`` x ``height`` x ``depth`` (cm, along
the model's X, Y, Z; Y is up and the front faces +Z). This module does the same and returns
the mesh in metres with Z up: ``(x, y, z) = (X, -Z, Y) / 100``, so the front faces -y, the
footprint is centred on the origin and the bottom sits at z = 0 (add ``elevation`` when
placing). Colours come from the MTL materials: the texture (``map_Kd``) where there is one,
else the diffuse colour ``Kd``; opacity ``d`` is kept so that glass can be left out of scans.

This is the data source of the synthetic rooms (Debian's ``sweethome3d-furniture``, see
docs/synthetic_rooms.md); it implements no paper equation.
"""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

FURNITURE_DIR = Path("/usr/share/sweethome3d/furniture")
"""Where the Debian package ``sweethome3d-furniture`` installs the libraries."""

TEXTURE_MAX_SIZE = 128
"""Textures are shrunk to at most this many pixels a side: colour sampling needs no more."""


class FurnitureError(ValueError):
    """A furniture library or model that cannot be read; the message names the file."""


@dataclass(frozen=True)
class CatalogEntry:
    """One model of a furniture library, as its catalog describes it (sizes in metres)."""

    library: str
    """The library's file name without ``.sh3f``, e.g. ``BlendSwap-CC-0``."""
    model_id: str
    """The catalog id, e.g. ``Blend Swap CC-0#oakChair``."""
    name: str
    category: str
    width: float
    depth: float
    height: float
    elevation: float
    door_or_window: bool
    model_path: str
    """Path of the OBJ file inside the zip (no leading slash)."""
    model_rotation: tuple[float, ...] | None
    creator: str
    licence: str
    """The library's licence line from the catalog header."""

    @property
    def key(self) -> str:
        """The short id used in ``ssen_ros/synthetic/furniture_classes.csv``: the part after ``#``."""
        return self.model_id.split("#", 1)[-1]


@dataclass
class Material:
    """A surface material: diffuse colour (uint8 RGB), optional texture, opacity 0..1."""

    name: str
    color: np.ndarray
    texture: np.ndarray | None = None
    opacity: float = 1.0


@dataclass
class Mesh:
    """A triangle mesh with one material per face and, where textured, per-corner UVs."""

    vertices: np.ndarray
    """(V, 3) float64, metres."""
    faces: np.ndarray
    """(F, 3) int64 vertex indices."""
    face_material: np.ndarray
    """(F,) int32 index into ``materials``."""
    materials: list[Material]
    uv: np.ndarray | None = None
    """(F, 3, 2) float32 texture coordinates, NaN where a face has none; None if no face has."""
    quad_pairs: bool = False
    """True for procedural meshes whose faces 2i, 2i+1 are the halves (a, b, c), (a, c, d) of
    planar parallelograms a-b-c-d: samplers may then use an even grid instead of random points."""
    face_opacity: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.face_opacity = np.array([m.opacity for m in self.materials] or [1.0])[self.face_material]

    def triangles(self) -> np.ndarray:
        """(F, 3, 3) corner coordinates."""
        return self.vertices[self.faces]

    def face_areas(self) -> np.ndarray:
        t = self.triangles()
        return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)

    def face_normals(self) -> np.ndarray:
        """(F, 3) unit normals (zero for degenerate faces)."""
        t = self.triangles()
        n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, length, out=np.zeros_like(n), where=length > 0)

    def colors_at(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """uint8 RGB at points given by face index (P,) and barycentric weights (P, 3)."""
        palette = np.stack([m.color for m in self.materials]) if self.materials else \
            np.full((1, 3), 128, np.uint8)
        mat = self.face_material[face]
        colors = palette[mat].copy()
        if self.uv is None:
            return colors
        uv = np.einsum("pk,pkj->pj", bary, self.uv[face])
        for m_index, material in enumerate(self.materials):
            if material.texture is None:
                continue
            sel = np.flatnonzero((mat == m_index) & np.isfinite(uv[:, 0]))
            if sel.size == 0:
                continue
            h, w = material.texture.shape[:2]
            u = np.mod(uv[sel, 0], 1.0)
            v = np.mod(uv[sel, 1], 1.0)
            col = np.minimum((u * w).astype(np.int64), w - 1)
            row = np.minimum(((1.0 - v) * h).astype(np.int64), h - 1)  # OBJ v runs bottom-up
            colors[sel] = material.texture[row, col]
        return colors


# ---------------------------------------------------------------------------------------------
# Catalog


def _read_properties(text: str) -> dict[str, str]:
    """Parse a Java ``.properties`` text: ``key=value`` / ``key: value``, ``\\`` continuations,
    ``\\uXXXX`` escapes, ``#``/``!`` comments."""
    props: dict[str, str] = {}
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip() if not pending else raw.lstrip()
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    for line in logical:
        match = re.match(r"((?:\\.|[^=:\s\\])*)\s*[=:\s]\s*(.*)$", line)
        if not match:
            props[line] = ""
            continue
        key, value = match.group(1), match.group(2)
        props[_unescape(key)] = _unescape(value)
    return props


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    return re.sub(r"\\u([0-9a-fA-F]{4})|\\(.)",
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else
                  {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(m.group(2), m.group(2)), s)


def library_path(library: str, furniture_dir: "Path | str" = FURNITURE_DIR) -> Path:
    """Path of ``{library}.sh3f`` in ``furniture_dir``; raises FurnitureError if missing."""
    path = Path(furniture_dir) / f"{library}.sh3f"
    if not path.is_file():
        raise FurnitureError(f"furniture library {path} not found (install the Debian package "
                             "sweethome3d-furniture or pass furniture_dir)")
    return path


@lru_cache(maxsize=16)
def read_catalog(path: "Path | str") -> tuple[CatalogEntry, ...]:
    """All models of one ``.sh3f`` library, in catalog order."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            raw = zf.read("PluginFurnitureCatalog.properties")
    except (OSError, zipfile.BadZipFile, KeyError) as e:
        raise FurnitureError(f"{path}: not a furniture library ({e})") from e
    props = _read_properties(raw.decode("iso-8859-1"))
    licence = props.get("license", "")
    library = path.name[: -len(".sh3f")] if path.name.endswith(".sh3f") else path.stem
    indices = sorted(int(k.split("#")[1]) for k in props if k.startswith("id#"))
    entries = []
    for i in indices:
        def get(name: str, default: str = "") -> str:
            return props.get(f"{name}#{i}", default)
        try:
            rotation = tuple(float(x) for x in get("modelRotation").split()) or None
            if rotation is not None and len(rotation) != 9:
                raise ValueError(f"modelRotation has {len(rotation)} numbers, not 9")
            entries.append(CatalogEntry(
                library=library, model_id=get("id"), name=get("name"), category=get("category"),
                width=float(get("width")) / 100, depth=float(get("depth")) / 100,
                height=float(get("height")) / 100, elevation=float(get("elevation", "0")) / 100,
                door_or_window=get("doorOrWindow") == "true", model_path=get("model").lstrip("/"),
                model_rotation=rotation, creator=get("creator"), licence=licence))
        except ValueError as e:
            raise FurnitureError(f"{path}: catalog entry #{i} ({get('id')}): {e}") from e
    return tuple(entries)


# ---------------------------------------------------------------------------------------------
# OBJ + MTL


def _parse_mtl(text: str, folder: str, zf: zipfile.ZipFile, where: str) -> dict[str, Material]:
    materials: dict[str, Material] = {}
    current: Material | None = None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        if tag == "newmtl":
            current = Material(" ".join(parts[1:]), np.full(3, 200, np.uint8))
            materials[current.name] = current
        elif current is None:
            continue
        elif tag == "Kd" and len(parts) >= 4:
            current.color = (np.clip([float(x) for x in parts[1:4]], 0, 1) * 255 + 0.5).astype(np.uint8)
        elif tag == "d" and len(parts) >= 2:
            current.opacity = float(parts[1])
        elif tag == "Tr" and len(parts) >= 2:
            current.opacity = 1.0 - float(parts[1])
        elif tag == "map_Kd" and len(parts) >= 2:
            current.texture = _load_texture(zf, _join(folder, parts[-1]), where)
    return materials


def _join(folder: str, name: str) -> str:
    parts: list[str] = [p for p in folder.split("/") if p]
    for p in name.replace("\\", "/").split("/"):
        if p == "..":
            parts = parts[:-1]
        elif p and p != ".":
            parts.append(p)
    return "/".join(parts)


def _load_texture(zf: zipfile.ZipFile, name: str, where: str) -> np.ndarray | None:
    from PIL import Image  # pillow comes with matplotlib

    try:
        data = zf.read(name)
    except KeyError:
        return None  # Sweet Home 3D also renders such materials with their plain colour
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except OSError as e:
        raise FurnitureError(f"{where}: texture {name} cannot be decoded ({e})") from e
    image.thumbnail((TEXTURE_MAX_SIZE, TEXTURE_MAX_SIZE))
    return np.asarray(image, dtype=np.uint8).copy()


def _index(tokens: list[str], count: int) -> np.ndarray:
    """OBJ indices (1-based, negative = relative to the end) to 0-based."""
    idx = np.array(tokens, dtype=np.int64)
    return np.where(idx < 0, idx + count, idx - 1)


def parse_obj(text: str, materials: dict[str, Material], where: str = "<obj>") -> Mesh:
    """Triangulated mesh of an OBJ text (polygons as fans; points and lines dropped)."""
    verts: list[str] = []
    tex: list[str] = []
    corner_v: list[str] = []
    corner_t: list[str] = []
    face_sizes: list[int] = []
    face_mat_names: list[str] = []
    mat_order: dict[str, int] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("v "):
            verts.append(line[2:])
        elif line.startswith("vt "):
            tex.append(line[3:])
        elif line.startswith("f "):
            corners = line[2:].split()
            if len(corners) < 3:
                continue
            for c in corners:
                fields = c.split("/")
                corner_v.append(fields[0])
                corner_t.append(fields[1] if len(fields) > 1 and fields[1] else "0")
            face_sizes.append(len(corners))
            face_mat_names.append(current)
        elif line.startswith("usemtl"):
            current = line[6:].strip()
            mat_order.setdefault(current, len(mat_order))
    if not face_sizes:
        raise FurnitureError(f"{where}: no faces")
    try:
        vertices = np.array(" ".join(" ".join(v.split()[:3]) for v in verts).split(),
                            dtype=np.float64).reshape(-1, 3)
        v_index = _index(corner_v, len(vertices))
        has_t = np.array([t != "0" for t in corner_t])
        t_index = np.where(has_t, _index([t if t != "0" else "1" for t in corner_t], len(tex)), -1)
        uvs = (np.array(" ".join(" ".join(t.split()[:2]) for t in tex).split(), dtype=np.float64)
               .reshape(-1, 2) if tex else np.zeros((0, 2)))
    except ValueError as e:
        raise FurnitureError(f"{where}: malformed vertex or face line ({e})") from e
    if v_index.size and (v_index.min() < 0 or v_index.max() >= len(vertices)):
        raise FurnitureError(f"{where}: face index out of range (mesh has {len(vertices)} vertices)")
    # Fan triangulation: polygon (c0, c1, ..., ck) -> (c0, ci, ci+1).
    sizes = np.array(face_sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    tri_count = sizes - 2
    poly = np.repeat(np.arange(len(sizes)), tri_count)
    offset = np.arange(tri_count.sum()) - np.repeat(np.cumsum(tri_count) - tri_count, tri_count) + 1
    corners = np.stack([starts[poly], starts[poly] + offset, starts[poly] + offset + 1], axis=1)
    faces = v_index[corners]
    names = list(mat_order) if mat_order else [""]
    mats = [materials.get(n, Material(n, np.full(3, 200, np.uint8))) for n in names]
    lookup = {n: i for i, n in enumerate(names)}
    face_material = np.array([lookup.get(n, 0) for n in face_mat_names], dtype=np.int32)[poly]
    uv = None
    if any(m.texture is not None for m in mats) and len(uvs):
        t_corner = t_index[corners]
        valid = (t_corner >= 0).all(axis=1) & (t_corner < len(uvs)).all(axis=1)
        uv = np.full((len(faces), 3, 2), np.nan, np.float32)
        uv[valid] = uvs[t_corner[valid]]
    return Mesh(vertices, faces, face_material, mats, uv)


@lru_cache(maxsize=256)
def load_mesh(entry: CatalogEntry, furniture_dir: "Path | str" = FURNITURE_DIR) -> Mesh:
    """The model of ``entry``, placed as Sweet Home 3D places it: rotated, scaled to the
    catalog size, metres, Z up, footprint centred on the origin, bottom at z = 0.

    Cached: callers must not modify the returned arrays.
    """
    path = library_path(entry.library, furniture_dir)
    where = f"{path}:{entry.model_path}"
    try:
        with zipfile.ZipFile(path) as zf:
            text = zf.read(entry.model_path).decode("utf-8", errors="replace")
            folder = entry.model_path.rsplit("/", 1)[0]
            materials: dict[str, Material] = {}
            for line in text.splitlines():
                if line.startswith("mtllib"):
                    name = _join(folder, line[6:].strip())
                    try:
                        mtl = zf.read(name).decode("utf-8", errors="replace")
                    except KeyError:
                        continue
                    materials.update(_parse_mtl(mtl, name.rsplit("/", 1)[0], zf, where))
    except KeyError as e:
        raise FurnitureError(f"{where}: model file missing from the library") from e
    except (OSError, zipfile.BadZipFile) as e:
        raise FurnitureError(f"{where}: {e}") from e
    mesh = parse_obj(text, materials, where)
    v = mesh.vertices
    if entry.model_rotation is not None:
        v = v @ np.asarray(entry.model_rotation, dtype=np.float64).reshape(3, 3).T
    used = v[np.unique(mesh.faces)]
    lo, hi = used.min(axis=0), used.max(axis=0)
    size = np.maximum(hi - lo, 1e-9)
    target = np.array([entry.width, entry.height, entry.depth])
    v = (v - (lo + hi) / 2) * (target / size)          # centred, scaled, still Y up
    mesh.vertices = np.stack([v[:, 0], -v[:, 2], v[:, 1] + entry.height / 2], axis=1)
    for a in (mesh.vertices, mesh.faces, mesh.face_material):
        a.setflags(write=False)
    return mesh


def find_entry(library: str, key: str, furniture_dir: "Path | str" = FURNITURE_DIR) -> CatalogEntry:
    """The catalog entry whose id ends in ``#key`` in ``library``; FurnitureError if absent."""
    for entry in read_catalog(library_path(library, furniture_dir)):
        if entry.key == key:
            return entry
    raise FurnitureError(f"model {key!r} not in library {library} ({library_path(library, furniture_dir)})")


# ---------------------------------------------------------------------------------------------
# The reviewed model -> class table


CLASS_TABLE = Path(__file__).resolve().parent / "furniture_classes.csv"
"""``ssen_ros/synthetic/furniture_classes.csv``: every model the rooms may use, with its ScanNet class."""

PLACEMENTS = ("seat", "free", "wall", "bedside", "kitchen", "high", "table", "coffee", "desk",
              "door", "window", "curtain", "top", "floor")
"""How room.py may place a model (the csv's header comment says what each means)."""

CLUTTER = "clutter"
"""The csv's class for props outside the benchmark classes: placed as clutter, labelled ignore."""


@dataclass(frozen=True)
class FurnitureModel:
    """A usable model: its catalog entry, train id (``classes.CLASS_NAMES``; ``IGNORE_LABEL``
    for clutter), placement."""

    entry: CatalogEntry
    label: int
    placement: str
    licence: str


def load_class_table(path: "Path | str" = CLASS_TABLE,
                     furniture_dir: "Path | str" = FURNITURE_DIR) -> tuple[FurnitureModel, ...]:
    """The mapped rows of the class table (rows with an empty class are excluded models;
    rows of class ``clutter`` are props with the ignore label)."""
    import csv

    from ssen_ros.classes import CLASS_NAMES, IGNORE_LABEL

    path = Path(path)
    try:
        lines = [l for l in path.read_text().splitlines() if l and not l.startswith("#")]
    except OSError as e:
        raise FurnitureError(f"cannot read class table {path}: {e}") from e
    reader = csv.DictReader(lines)
    need = {"library", "model", "scannet_class", "placement", "licence"}
    if not need <= set(reader.fieldnames or ()):
        raise FurnitureError(f"{path}: columns {sorted(need - set(reader.fieldnames or ()))} missing")
    specs = []
    for n, row in enumerate(reader, 2):
        name = row["scannet_class"].strip()
        if not name:
            continue
        if name not in CLASS_NAMES and name != CLUTTER:
            raise FurnitureError(f"{path}:{n}: unknown ScanNet class {name!r}")
        if row["placement"] not in PLACEMENTS:
            raise FurnitureError(f"{path}:{n}: unknown placement {row['placement']!r}; one of {PLACEMENTS}")
        entry = find_entry(row["library"], row["model"], furniture_dir)
        label = IGNORE_LABEL if name == CLUTTER else CLASS_NAMES.index(name)
        specs.append(FurnitureModel(entry, label, row["placement"], row["licence"]))
    return tuple(specs)
