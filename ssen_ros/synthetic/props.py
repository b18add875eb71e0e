"""Clutter props: small procedural objects, and the furniture surfaces they can rest on.

Real indoor scans hold much clutter outside the benchmark classes (boxes, books, bottles,
monitors, lamps, pillows, clothes, bags, plants) on tables, shelves, beds and the floor; the
benchmark ignores it, but a network that never saw it mistakes it for furniture.
``random_prop`` makes one such object (footprint centred, bottom at z = 0, random plain
colours). ``Supports`` finds where a piece of furniture can carry one: its level surfaces,
grouped by height, and for a footprint on one of them, whether the surface lies under all of
it and the mesh leaves the space above it free, so that props fit between a shelf's boards.
The mesh primitives (boxes, cylinders, blobs) also serve ``room.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ssen_ros.synthetic.furniture import Material, Mesh

# ---------------------------------------------------------------------------------------------
# Primitives


def plain(color: "np.ndarray | tuple[int, int, int]", name: str = "paint") -> Material:
    """An untextured opaque material of ``color`` (RGB 0..255)."""
    return Material(name, np.clip(np.asarray(color), 0, 255).astype(np.uint8))


def box_mesh(size: "tuple[float, float, float]", material: Material) -> Mesh:
    """A closed box of ``size`` (w, d, h), footprint centred, bottom at z = 0."""
    w, d, h = size
    v = np.array([[x, y, z] for z in (0, h) for y in (-d / 2, d / 2) for x in (-w / 2, w / 2)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, e in quads for t in ((a, b, c), (a, c, e))])
    return Mesh(v, faces, np.zeros(len(faces), np.int32), [material], quad_pairs=True)


def cylinder_mesh(radius: float, height: float, material: Material, top_radius: float | None = None,
                  segments: int = 12) -> Mesh:
    """A closed cylinder (a frustum with ``top_radius``) on the origin, bottom at z = 0."""
    n = segments
    a = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a)], axis=1)
    top = radius if top_radius is None else top_radius
    v = np.vstack([np.column_stack([ring * radius, np.zeros(n)]),
                   np.column_stack([ring * top, np.full(n, height)]), [[0, 0, 0], [0, 0, height]]])
    i = np.arange(n)
    j = (i + 1) % n
    faces = np.vstack([np.stack([i, j, n + j], 1), np.stack([i, n + j, n + i], 1),
                       np.stack([np.full(n, 2 * n), j, i], 1), np.stack([np.full(n, 2 * n + 1), n + i, n + j], 1)])
    return Mesh(v, faces, np.zeros(len(faces), np.int32), [material])


def blob_mesh(size: "tuple[float, float, float]", material: Material, rng: np.random.Generator,
              squareness: float = 1.0, bumps: float = 0.0, rings: int = 7, segments: int = 12) -> Mesh:
    """A soft lump of ``size`` (w, d, h), bottom at z = 0: a superellipsoid (``squareness`` < 1
    is boxier) with random radial ``bumps`` (a fraction of the radius)."""
    lat = np.linspace(-math.pi / 2, math.pi / 2, rings + 1)
    lon = np.linspace(0.0, 2 * math.pi, segments, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")

    def shape(t: np.ndarray) -> np.ndarray:
        return np.sign(t) * np.abs(t) ** squareness

    r = 1.0 + bumps * rng.uniform(-1.0, 1.0, la.shape)
    r[0], r[-1] = 1.0, 1.0    # the poles stay single points
    x = shape(np.cos(la)) * shape(np.cos(lo)) * r * size[0] / 2
    y = shape(np.cos(la)) * shape(np.sin(lo)) * r * size[1] / 2
    z = (shape(np.sin(la)) + 1.0) * size[2] / 2
    v = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    k = np.arange(rings)[:, None] * segments
    i = np.arange(segments)[None, :]
    a, b = k + i, k + (i + 1) % segments
    faces = np.concatenate([np.stack([a, b, b + segments], -1), np.stack([a, b + segments, a + segments], -1)])
    return Mesh(v, faces.reshape(-1, 3), np.zeros(faces.size // 3, np.int32), [material])


def merge(parts: list[Mesh]) -> Mesh:
    """One mesh of all ``parts`` (materials and UVs kept)."""
    verts, faces, mats, fmat, uvs = [], [], [], [], []
    offset = 0
    any_uv = any(p.uv is not None for p in parts)
    for p in parts:
        verts.append(p.vertices)
        faces.append(p.faces + offset)
        fmat.append(p.face_material + len(mats))
        mats.extend(p.materials)
        if any_uv:
            uvs.append(p.uv if p.uv is not None else np.full((len(p.faces), 3, 2), np.nan, np.float32))
        offset += len(p.vertices)
    return Mesh(np.vstack(verts), np.vstack(faces), np.concatenate(fmat).astype(np.int32), mats,
                np.concatenate(uvs) if any_uv else None, quad_pairs=all(p.quad_pairs for p in parts))


def shift(mesh: Mesh, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Mesh:
    """``mesh`` moved by (x, y, z), in place."""
    mesh.vertices = mesh.vertices + np.array([x, y, z])
    return mesh


# ---------------------------------------------------------------------------------------------
# Props


def _color(rng: np.random.Generator) -> np.ndarray:
    """A random object colour: saturated, pale or dark, as household things are."""
    kind = rng.random()
    if kind < 0.5:
        return rng.uniform(0, 255, 3)
    if kind < 0.75:
        return rng.uniform(170, 250) * rng.uniform(0.85, 1.0, 3)
    return rng.uniform(10, 80) * rng.uniform(0.7, 1.0, 3)


def _carton(rng: np.random.Generator) -> Mesh:
    size = rng.uniform([0.15, 0.12, 0.08], [0.55, 0.45, 0.45])
    brown = rng.random() < 0.7
    color = rng.uniform([150, 105, 60], [205, 155, 105]) if brown else _color(rng)
    return box_mesh(tuple(size), plain(color, "carton"))


def _book_row(rng: np.random.Generator) -> Mesh:
    """Books standing side by side, backs aligned."""
    thick = rng.uniform(0.015, 0.05, int(rng.integers(3, 15)))
    depth, height = rng.uniform(0.13, 0.23, len(thick)), rng.uniform(0.15, 0.32, len(thick))
    left = -thick.sum() / 2 + np.cumsum(thick) - thick / 2
    return merge([shift(box_mesh((t, d, h), plain(_color(rng), "book")), x=x, y=(depth.max() - d) / 2)
                  for t, d, h, x in zip(thick, depth, height, left)])


def _book_stack(rng: np.random.Generator) -> Mesh:
    """Books lying on each other, a little askew."""
    parts, z = [], 0.0
    w, d = rng.uniform(0.15, 0.3), rng.uniform(0.12, 0.22)
    for _ in range(int(rng.integers(1, 7))):
        t = rng.uniform(0.015, 0.05)
        size = (w * rng.uniform(0.8, 1.0), d * rng.uniform(0.8, 1.0), t)
        parts.append(shift(box_mesh(size, plain(_color(rng), "book")), *rng.uniform(-0.01, 0.01, 2), z=z))
        z += t
    return merge(parts)


def _bottle(rng: np.random.Generator) -> Mesh:
    r, h = rng.uniform(0.025, 0.045), rng.uniform(0.12, 0.25)
    material = plain(_color(rng), "bottle")
    neck = cylinder_mesh(r * 0.35, rng.uniform(0.04, 0.08), material)
    return merge([cylinder_mesh(r, h, material), shift(neck, z=h)])


def _mug(rng: np.random.Generator) -> Mesh:
    return cylinder_mesh(rng.uniform(0.035, 0.05), rng.uniform(0.07, 0.12), plain(_color(rng), "mug"))


def _bin(rng: np.random.Generator) -> Mesh:
    r = rng.uniform(0.1, 0.2)
    return cylinder_mesh(r, rng.uniform(0.25, 0.5), plain(_color(rng), "bin"), top_radius=r * rng.uniform(1.0, 1.2))


def _monitor(rng: np.random.Generator) -> Mesh:
    """A flat screen on a neck and a foot plate."""
    dark = plain(rng.uniform(15, 60) * np.ones(3), "monitor")
    screen = rng.uniform([0.4, 0.025, 0.25], [0.7, 0.05, 0.42])
    neck_h = rng.uniform(0.08, 0.15)
    return merge([box_mesh((rng.uniform(0.18, 0.25), rng.uniform(0.15, 0.2), 0.015), dark),
                  shift(box_mesh((0.04, 0.03, neck_h), dark), y=0.04),
                  shift(box_mesh(tuple(screen), dark), y=0.04 - screen[1] / 2 - 0.015, z=neck_h - 0.03)])


def _lamp(rng: np.random.Generator) -> Mesh:
    """A base, a pole and a shade."""
    metal = plain(_color(rng), "lamp")
    pole = rng.uniform(0.25, 0.5)
    shade_r = rng.uniform(0.1, 0.18)
    return merge([cylinder_mesh(rng.uniform(0.06, 0.1), 0.03, metal), cylinder_mesh(0.012, pole, metal),
                  shift(cylinder_mesh(shade_r, rng.uniform(0.12, 0.22), plain(_color(rng), "shade"),
                                      top_radius=shade_r * rng.uniform(0.5, 0.8)), z=pole)])


def _pillow(rng: np.random.Generator) -> Mesh:
    size = rng.uniform([0.4, 0.3, 0.1], [0.7, 0.5, 0.18])
    return blob_mesh(tuple(size), plain(_color(rng), "pillow"), rng, squareness=0.35, bumps=0.03)


def _clothes(rng: np.random.Generator) -> Mesh:
    size = rng.uniform([0.25, 0.2, 0.04], [0.6, 0.5, 0.15])
    return blob_mesh(tuple(size), plain(_color(rng), "clothes"), rng, squareness=0.6, bumps=0.25)


def _bag(rng: np.random.Generator) -> Mesh:
    size = rng.uniform([0.25, 0.12, 0.2], [0.45, 0.3, 0.45])
    return blob_mesh(tuple(size), plain(_color(rng), "bag"), rng, squareness=0.6, bumps=0.1)


def _plant(rng: np.random.Generator) -> Mesh:
    """A pot with a leafy lump on it."""
    r, h = rng.uniform(0.06, 0.15), rng.uniform(0.1, 0.25)
    pot = cylinder_mesh(r, h, plain(rng.choice([[170, 90, 60], [235, 235, 230], [60, 60, 60]]), "pot"),
                        top_radius=r * 1.2)
    leaves = blob_mesh((r * 3, r * 3, rng.uniform(2, 5) * r), plain(rng.uniform([30, 70, 20], [90, 150, 70]),
                                                                    "leaves"), rng, bumps=0.3)
    return merge([pot, shift(leaves, z=h * 0.8)])


PROPS = {"carton": _carton, "book row": _book_row, "book stack": _book_stack, "bottle": _bottle,
         "mug": _mug, "bin": _bin, "monitor": _monitor, "lamp": _lamp, "pillow": _pillow,
         "clothes": _clothes, "bag": _bag, "plant": _plant}
"""The procedural props by name."""

PROP_MIX = {
    "top": {"carton": 1, "book stack": 2, "book row": 1, "bottle": 2, "mug": 2, "lamp": 1,
            "clothes": 1, "bag": 1, "plant": 1},
    "desk": {"monitor": 3, "book stack": 2, "mug": 2, "bottle": 1, "lamp": 1, "carton": 1, "plant": 0.5},
    "shelf": {"book row": 6, "book stack": 2, "carton": 1, "bottle": 1, "plant": 0.5},
    "bed": {"pillow": 4, "clothes": 3, "bag": 1, "book stack": 0.5},
    "floor": {"carton": 3, "bin": 2, "bag": 2, "clothes": 1, "plant": 1.5, "book stack": 0.5},
}
"""Relative frequencies of the props per kind of place."""


def random_prop(rng: np.random.Generator, place: str) -> tuple[str, Mesh]:
    """A prop typical of ``place`` (a key of ``PROP_MIX``): its name and mesh."""
    names = list(PROP_MIX[place])
    weights = np.array([PROP_MIX[place][n] for n in names], float)
    name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    return name, PROPS[name](rng)


# ---------------------------------------------------------------------------------------------
# Where props can rest


@dataclass
class Level:
    """A level surface of a mesh: its height and the grid cells (local xy) it covers."""

    z: float
    origin: np.ndarray
    cells: np.ndarray
    """(nx, ny) bool, True where the surface is."""
    cell: float

    @property
    def area(self) -> float:
        return float(self.cells.sum()) * self.cell ** 2

    def random_point(self, rng: np.random.Generator) -> np.ndarray:
        """The centre of a random covered cell."""
        ij = np.argwhere(self.cells)[int(rng.integers(int(self.cells.sum())))]
        return self.origin + (ij + 0.5) * self.cell

    def covers(self, xy: np.ndarray) -> np.ndarray:
        """Whether each local (x, y) lies on the surface."""
        ij = np.floor((xy - self.origin) / self.cell).astype(np.int64)
        inside = (ij >= 0).all(axis=1) & (ij < self.cells.shape).all(axis=1)
        out = np.zeros(len(xy), bool)
        out[inside] = self.cells[ij[inside, 0], ij[inside, 1]]
        return out


class Supports:
    """The level surfaces of a mesh and a test whether a footprint can rest on one.

    The mesh is sampled evenly (fixed seed, so the result depends on the mesh only); samples on
    faces within ``max_tilt`` of level, in bins at most ``span`` high, form the levels.
    """

    def __init__(self, mesh: Mesh, spacing: float = 0.015, cell: float = 0.03, span: float = 0.02,
                 max_tilt: float = math.radians(25), min_area: float = 0.01, max_points: int = 80_000):
        rng = np.random.default_rng(0)
        areas = mesh.face_areas() * (mesh.face_opacity >= 0.5)
        total = float(areas.sum())
        n = int(min(max_points, total / spacing ** 2)) if total > 0 else 0
        face = np.minimum(np.searchsorted(np.cumsum(areas) / max(total, 1e-12), rng.random(n)), len(areas) - 1)
        r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
        bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)
        self.points = np.einsum("pk,pkj->pj", bary, mesh.triangles()[face])
        level = np.abs(mesh.face_normals()[face, 2]) >= math.cos(max_tilt)
        self.levels = self._levels(self.points[level], cell, span, min_area)

    @staticmethod
    def _levels(flat: np.ndarray, cell: float, span: float, min_area: float) -> list[Level]:
        """Group level samples into surfaces by height: a new surface starts where the sorted
        heights leave the ``span`` above the current surface's lowest sample."""
        out: list[Level] = []
        flat = flat[np.argsort(flat[:, 2])]
        start = 0
        for k in range(1, len(flat) + 1):
            if k < len(flat) and flat[k, 2] - flat[start, 2] <= span:
                continue
            group = flat[start:k]
            start = k
            origin = group[:, :2].min(axis=0)
            ij = np.floor((group[:, :2] - origin) / cell).astype(np.int64)
            cells = np.zeros(ij.max(axis=0) + 1, bool)
            cells[ij[:, 0], ij[:, 1]] = True
            lev = Level(float(group[:, 2].max()), origin, cells, cell)
            if lev.area >= min_area:
                out.append(lev)
        return out

    def fits(self, level: Level, center: np.ndarray, half: np.ndarray, yaw: float, height: float,
             min_cover: float = 0.9) -> bool:
        """Whether a footprint (local centre, half sizes, yaw) rests on ``level`` over at least
        ``min_cover`` of its area with no part of the mesh in the ``height`` above it."""
        c, s = math.cos(yaw), math.sin(yaw)
        axes = np.array([[c, s], [-s, c]])
        steps = [np.linspace(-h, h, max(2, int(math.ceil(2 * h / level.cell)) + 1)) for h in half * 0.95]
        probe = np.stack(np.meshgrid(*steps, indexing="ij"), axis=-1).reshape(-1, 2) @ axes + center
        if level.covers(probe).mean() < min_cover:
            return False
        band = (self.points[:, 2] > level.z + 0.005) & (self.points[:, 2] < level.z + height + 0.01)
        local = (self.points[band, :2] - center) @ axes.T
        return not (np.abs(local) <= half + 0.005).all(axis=1).any()
