"""Room layouts: a floor, walls with doors and windows, and real furniture placed without overlap.

A room is an axis-aligned box ``[0, width] x [0, depth]`` (metres, z up) of one of a few
ScanNet-like types (bedroom, office, conference room, living room, kitchen, bathroom,
classroom). Each type has a recipe that puts furniture where people put it, favouring the
cases the paper (§I, §IV) says are hard, objects in contact and rows of identical objects:

* beds, sofas, cabinets, shelves, fridges, toilets with their backs to a wall, flush;
* nightstands touching the bed; kitchen cabinets in a touching row under a counter slab
  with wall cabinets above; desks back to back; identical chairs in rows around tables and
  pushed in at desks, their seats under the table top;
* doors and windows in wall openings (with jambs), curtains beside windows, framed
  pictures on free wall, shower curtains along bathtubs (made here: the libraries have none).
* clutter outside the benchmark classes (label and instance -1, as ScanNet's otherprop is
  ignored): props (``props.py`` and the csv's ``clutter`` models) resting on the level surfaces
  of the furniture (table tops, shelf boards, beds, counters) clear of every mesh and box, and
  on the floor, mostly along the walls; without it a network learns that every point on a
  table top belongs to the table.

Every object keeps an oriented footprint rectangle and a height range; two objects may not
overlap in both (touching is allowed), except a chair and the table it is pushed under,
where only the chair's parts above the table top's underside must stay clear. Models come
from ``ssen_ros/synthetic/furniture_classes.csv`` (see ``furniture.py``); walls, floor, pictures and
counter slabs are made here. Everything is drawn from one ``numpy`` Generator, so a seed
fixes the room. Implements no paper equation; it makes the data of the paper's §IV setting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssen_ros.classes import CLASS_NAMES, IGNORE_LABEL
from ssen_ros.synthetic.furniture import (CLASS_TABLE, FURNITURE_DIR, FurnitureModel, Material, Mesh,
                                     load_class_table, load_mesh)
from ssen_ros.synthetic.props import Level, Supports, box_mesh, merge, plain, random_prop, shift

ROOM_TYPES = ("bedroom", "office", "conference", "living", "kitchen", "bathroom", "classroom")

_LABEL = {name: i for i, name in enumerate(CLASS_NAMES)}
_SIZES = {  # (width range, depth range) in metres
    "bedroom": ((3.0, 5.0), (3.2, 5.5)), "office": ((4.0, 7.5), (4.0, 7.0)),
    "conference": ((4.0, 6.5), (5.0, 8.5)), "living": ((4.0, 7.0), (4.0, 7.0)),
    "kitchen": ((3.0, 5.0), (3.2, 6.0)), "bathroom": ((2.2, 3.5), (2.4, 4.0)),
    "classroom": ((5.5, 7.5), (5.5, 7.5)),
}


class LayoutError(ValueError):
    """A room that cannot be made with the given settings."""


# ---------------------------------------------------------------------------------------------
# Placed objects


@dataclass(eq=False)
class Placed:
    """An object in the room: a local mesh (footprint centred on the origin, bottom at z=0),
    a pose (yaw about z, then translation) and its labels."""

    name: str
    mesh: Mesh
    position: np.ndarray
    yaw: float
    label: int
    instance: int = -1
    """Instance id (>= 0) for the 18 instance classes, -1 for wall, floor and clutter."""
    size: np.ndarray = field(default_factory=lambda: np.zeros(3))
    """Footprint width, depth and height of the local mesh (m)."""
    model_id: str = ""

    def world_vertices(self) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return self.mesh.vertices @ rot.T + self.position

    def rectangle(self) -> "_Box":
        return _Box(self.position[:2].copy(), self.size[:2] / 2, self.yaw,
                    self.position[2], self.position[2] + self.size[2])


@dataclass
class Room:
    """A generated room: its size, type, objects (walls and floor first) and scan path."""

    room_type: str
    width: float
    depth: float
    height: float
    objects: list[Placed]
    viewpoints: np.ndarray
    """(V, 3) scanner positions along the robot's path, in path order."""

    @property
    def instances(self) -> list[Placed]:
        return [o for o in self.objects if o.instance >= 0]


@dataclass
class _Box:
    """Oriented footprint rectangle (centre, half sizes, yaw) with a height range."""

    center: np.ndarray
    half: np.ndarray
    yaw: float
    z0: float
    z1: float

    def axes(self) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, s], [-s, c]])

    def corners(self) -> np.ndarray:
        ax = self.axes()
        signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]])
        return self.center + (signs * self.half) @ ax

    def overlaps(self, other: "_Box", tol: float = 1e-3) -> bool:
        """True if the boxes share volume deeper than ``tol`` (touching is not overlapping)."""
        if min(self.z1, other.z1) - max(self.z0, other.z0) <= tol:
            return False
        reach = math.hypot(*self.half) + math.hypot(*other.half)
        if math.hypot(*(self.center - other.center)) >= reach:   # bounding circles apart
            return False
        a, b = self.corners(), other.corners()
        for axis in np.vstack([self.axes(), other.axes()]):
            pa, pb = a @ axis, b @ axis
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= tol:
                return False
        return True


# ---------------------------------------------------------------------------------------------
# Procedural meshes


def _quads_mesh(quads: np.ndarray, material: Material, uv_scale: float | None = None) -> Mesh:
    """Mesh of (Q, 4, 3) planar quads; with ``uv_scale``, UVs are the quad's first two
    in-plane coordinates divided by it (for repeating textures)."""
    q = np.asarray(quads, dtype=np.float64)
    verts = q.reshape(-1, 3)
    base = np.arange(len(q))[:, None] * 4
    faces = np.stack([base + [0, 1, 2], base + [0, 2, 3]], axis=1).reshape(-1, 3)
    uv = None
    if uv_scale is not None:
        # Planar UVs from the two coordinates along which the quad extends most.
        ext = np.ptp(q, axis=1)
        keep = np.argsort(-ext, axis=1)[:, :2]
        coords = np.take_along_axis(q, np.repeat(keep[:, None, :], 4, axis=1), axis=2) / uv_scale
        cuv = coords.reshape(-1, 2).astype(np.float32)
        uv = cuv[faces]
    return Mesh(verts, faces, np.zeros(len(faces), np.int32), [material], uv, quad_pairs=True)


def _floor_texture(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A repeating floor texture (planks or tiles) and the metres one repeat covers."""
    if rng.random() < 0.6:  # wooden planks, 4 boards per repeat
        base = rng.uniform([110, 70, 35], [190, 140, 90])
        boards = base * rng.uniform(0.85, 1.1, (4, 1))
        tex = np.repeat(boards, 16, axis=0)[:, None, :].repeat(64, axis=1)
        tex = tex * rng.uniform(0.93, 1.05, (64, 64, 1))          # grain
        tex[::16] *= 0.7                                            # seams
        return np.clip(tex, 0, 255).astype(np.uint8), float(rng.uniform(0.6, 0.9))
    tile = rng.uniform([150, 145, 135], [235, 230, 225])
    tex = np.tile(tile, (32, 32, 1)) * rng.uniform(0.96, 1.03, (32, 32, 1))
    tex[0, :] *= 0.6
    tex[:, 0] *= 0.6
    return np.clip(tex, 0, 255).astype(np.uint8), float(rng.uniform(0.3, 0.6))


def _picture_mesh(rng: np.random.Generator, w: float, h: float, depth: float) -> Mesh:
    """A framed picture, back at y = +depth/2 (against the wall), canvas facing -y."""
    frame_w = rng.uniform(0.02, 0.06)
    frame = plain(rng.choice([[40, 30, 20], [200, 170, 90], [30, 30, 30], [230, 230, 225]]), "frame")
    parts = [
        box_mesh((w, depth, frame_w), frame),
        shift(box_mesh((w, depth, frame_w), frame), z=h - frame_w),
        shift(box_mesh((frame_w, depth, h - 2 * frame_w), frame), x=-(w - frame_w) / 2, z=frame_w),
        shift(box_mesh((frame_w, depth, h - 2 * frame_w), frame), x=(w - frame_w) / 2, z=frame_w),
    ]
    # Canvas: a smooth random "painting" (a few coloured blobs on a ground colour).
    n = 48
    yy, xx = np.mgrid[0:n, 0:n] / n
    img = np.tile(rng.uniform(30, 230, 3), (n, n, 1))
    for _ in range(int(rng.integers(3, 8))):
        cx, cy, r = rng.random(), rng.random(), rng.uniform(0.1, 0.4)
        weight = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - weight) + rng.uniform(0, 255, 3) * weight
    canvas = Material("canvas", np.full(3, 128, np.uint8), img.astype(np.uint8))
    x0, x1, z0, z1 = -w / 2 + frame_w, w / 2 - frame_w, frame_w, h - frame_w
    y = depth / 2 - 0.01
    quad = np.array([[[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]]])
    cm = _quads_mesh(quad, canvas)
    cm.uv = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], np.float32)
    parts.append(cm)
    return merge(parts)


# ---------------------------------------------------------------------------------------------
# The layout engine


@dataclass
class _Wall:
    origin: np.ndarray   # start corner (x, y)
    along: np.ndarray    # unit vector along the wall
    inward: np.ndarray   # unit normal into the room
    length: float

    def yaw(self) -> float:
        """Yaw that turns a model's front (-y) towards the room."""
        return math.atan2(self.inward[0], -self.inward[1])

    def point(self, s: float, off: float) -> np.ndarray:
        return self.origin + self.along * s + self.inward * off


@dataclass
class _Opening:
    wall: int
    s0: float
    s1: float
    z0: float
    z1: float


class _Layout:
    """Mutable state while a room is being furnished."""

    def __init__(self, rng: np.random.Generator, specs: tuple[FurnitureModel, ...], room_type: str,
                 width: float, depth: float, height: float, thickness: float,
                 furniture_dir: "Path | str"):
        self.rng = rng
        self.specs = specs
        self.room_type = room_type
        self.width, self.depth, self.height, self.thickness = width, depth, height, thickness
        self.furniture_dir = furniture_dir
        self.walls = [
            _Wall(np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), width),
            _Wall(np.array([width, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), depth),
            _Wall(np.array([width, depth]), np.array([-1.0, 0.0]), np.array([0.0, -1.0]), width),
            _Wall(np.array([0.0, depth]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), depth),
        ]
        self.objects: list[Placed] = []
        self.boxes: list[_Box] = []           # collision boxes, parallel to `owners`
        self.owners: list[int] = []           # index into objects, -1 for keep-out zones
        self.exempt: set[tuple[int, int]] = set()
        self.openings: list[_Opening] = []

    # -- model choice --------------------------------------------------------------------
    def pick(self, placement: str, label: str | None = None, max_width: float = 99.0) -> FurnitureModel | None:
        cands = [s for s in self.specs if s.placement == placement
                 and (label is None or s.label == _LABEL[label]) and s.entry.width <= max_width]
        return cands[int(self.rng.integers(len(cands)))] if cands else None

    # -- collision -------------------------------------------------------------------------
    def free(self, box: _Box, ignore: tuple[int, ...] = ()) -> bool:
        lo = box.corners().min(axis=0)
        hi = box.corners().max(axis=0)
        if lo[0] < -1e-6 or lo[1] < -1e-6 or hi[0] > self.width + 1e-6 or hi[1] > self.depth + 1e-6:
            return False
        if box.z1 > self.height:
            return False
        return not any(o not in ignore and b.overlaps(box) for b, o in zip(self.boxes, self.owners))

    def keep_out(self, box: _Box) -> None:
        self.boxes.append(box)
        self.owners.append(-1)

    def add(self, name: str, mesh: Mesh, position: np.ndarray, yaw: float, label: int,
            size: np.ndarray, model_id: str = "", collide: bool = True) -> Placed:
        inst = -1 if label == IGNORE_LABEL or CLASS_NAMES[label] in ("wall", "floor") else \
            sum(1 for o in self.objects if o.instance >= 0)
        obj = Placed(name, mesh, np.asarray(position, dtype=np.float64), yaw, label, inst,
                     np.asarray(size, dtype=np.float64), model_id)
        self.objects.append(obj)
        if collide:
            self.boxes.append(obj.rectangle())
            self.owners.append(len(self.objects) - 1)
        return obj

    def add_model(self, spec: FurnitureModel, xy: np.ndarray, yaw: float, z: float | None = None,
                  ignore: tuple[int, ...] = (), check: bool = True) -> Placed | None:
        e = spec.entry
        z = e.elevation if z is None else z
        size = np.array([e.width, e.depth, e.height])
        box = _Box(np.asarray(xy, dtype=np.float64), size[:2] / 2, yaw, z, z + e.height)
        if check and not self.free(box, ignore):
            return None
        mesh = load_mesh(e, self.furniture_dir)
        return self.add(e.name, mesh, np.array([xy[0], xy[1], z]), yaw, spec.label, size, e.model_id)

    def trim(self, max_instances: int) -> None:
        """Keep the first ``max_instances`` instances (doors and windows came first), with their
        collision boxes; renumber them 0, 1, ..."""
        kept: list[Placed] = []
        new_index: dict[int, int] = {-1: -1}
        count = 0
        for i, o in enumerate(self.objects):
            if o.instance >= 0:
                if count >= max_instances:
                    continue
                o.instance, count = count, count + 1
            new_index[i] = len(kept)
            kept.append(o)
        pairs = [(b, new_index[o]) for b, o in zip(self.boxes, self.owners) if o in new_index]
        self.objects = kept
        self.boxes, self.owners = [b for b, _ in pairs], [o for _, o in pairs]

    # -- placement primitives ----------------------------------------------------------------
    def against_wall(self, spec: FurnitureModel, wall: int | None = None, s: float | None = None,
                     gap: float = 0.0, tries: int = 30, z: float | None = None) -> Placed | None:
        """Back to a wall (flush, or ``gap`` away), at ``s`` along it or anywhere free."""
        e = spec.entry
        for _ in range(tries if s is None else 1):
            k = int(self.rng.integers(4)) if wall is None else wall
            w = self.walls[k]
            if e.width > w.length:
                continue
            pos = s if s is not None else self.rng.uniform(e.width / 2, w.length - e.width / 2)
            placed = self.add_model(spec, w.point(pos, e.depth / 2 + gap), w.yaw(), z)
            if placed is not None:
                placed.wall = k  # type: ignore[attr-defined]
                placed.along = pos  # type: ignore[attr-defined]
                return placed
        return None

    def beside(self, anchor: Placed, spec: FurnitureModel, side: int, gap: float = 0.0) -> Placed | None:
        """Against the same wall as ``anchor``, touching its left (-1) or right (+1) side."""
        k = getattr(anchor, "wall", None)
        if k is None:
            return None
        s = anchor.along + side * (anchor.size[0] / 2 + gap + spec.entry.width / 2)  # type: ignore
        return self.against_wall(spec, k, s)

    def free_spot(self, spec: FurnitureModel, yaw: float | None = None, tries: int = 40,
                  margin: float = 0.0) -> Placed | None:
        e = spec.entry
        for _ in range(tries):
            a = yaw if yaw is not None else self.rng.choice([0, 0.5, 1, 1.5]) * math.pi + \
                self.rng.normal(0, 0.05)
            r = max(e.width, e.depth) / 2 + margin
            if 2 * r >= min(self.width, self.depth):
                return None
            xy = self.rng.uniform([r, r], [self.width - r, self.depth - r])
            placed = self.add_model(spec, xy, float(a))
            if placed is not None:
                return placed
        return None

    # -- doors, windows, curtains, pictures ----------------------------------------------------
    def opening(self, spec: FurnitureModel, wall: int, tries: int = 20) -> Placed | None:
        e = spec.entry
        w = self.walls[wall]
        if e.width + 0.3 > w.length:
            return None
        is_door = spec.placement == "door"
        z0 = 0.0 if is_door else float(np.clip(e.elevation, 0.3, self.height - e.height - 0.1))
        if z0 + e.height > self.height - 0.05:
            return None
        for _ in range(tries):
            s = self.rng.uniform(e.width / 2 + 0.15, w.length - e.width / 2 - 0.15)
            if any(o.wall == wall and s - e.width / 2 < o.s1 + 0.3 and s + e.width / 2 > o.s0 - 0.3
                   for o in self.openings):
                continue
            # Keep-out in front: the door's swing (a square), or a thin slab before a window.
            reach = e.width if is_door else 0.12
            keep = _Box(w.point(s, reach / 2), np.array([e.width / 2 + 0.05, reach / 2]), w.yaw(),
                        0.0 if is_door else z0, self.height)
            if not self.free(keep):
                continue
            xy = w.point(s, -self.thickness / 2)
            obj = self.add_model(spec, xy, w.yaw(), z0, check=False)
            assert obj is not None
            self.boxes.pop()
            self.owners.pop()
            self.keep_out(keep)
            self.openings.append(_Opening(wall, s - e.width / 2, s + e.width / 2, z0, z0 + e.height))
            obj.wall, obj.along = wall, s  # type: ignore[attr-defined]
            return obj
        return None

    def curtains(self, window: Placed) -> None:
        spec = self.pick("curtain")
        if spec is None:
            return
        e = spec.entry
        w = self.walls[window.wall]  # type: ignore[attr-defined]
        protrude = max(0.0, (window.size[1] - self.thickness) / 2)
        for side in (-1, 1):
            s = window.along + side * (window.size[0] / 2 + e.width / 2 - self.rng.uniform(0.15, 0.35))
            if not e.width / 2 <= s <= w.length - e.width / 2:
                continue
            height = min(e.height, self.height - 0.1)
            box_xy = w.point(s, max(protrude, 0.12) + 0.01 + e.depth / 2)  # past the keep-out
            self.add_model(spec, box_xy, w.yaw(), self.height - 0.05 - height)

    def picture(self) -> Placed | None:
        w_pic = float(self.rng.uniform(0.35, 1.2))
        h_pic = float(self.rng.uniform(0.3, 0.9))
        depth = float(self.rng.uniform(0.02, 0.045))
        z = float(self.rng.uniform(1.1, 1.6))
        if z + h_pic > self.height - 0.15:
            return None
        for _ in range(20):
            k = int(self.rng.integers(4))
            wall = self.walls[k]
            if w_pic + 0.2 > wall.length:
                continue
            s = self.rng.uniform(w_pic / 2 + 0.1, wall.length - w_pic / 2 - 0.1)
            xy = wall.point(s, depth / 2)
            box = _Box(xy, np.array([w_pic / 2, depth / 2]), wall.yaw(), z, z + h_pic)
            if not self.free(box) or any(o.wall == k and s + w_pic / 2 > o.s0 - 0.1 and
                                         s - w_pic / 2 < o.s1 + 0.1 for o in self.openings):
                continue
            mesh = _picture_mesh(self.rng, w_pic, h_pic, depth)
            return self.add("picture", mesh, np.array([xy[0], xy[1], z]), wall.yaw(), _LABEL["picture"],
                            np.array([w_pic, depth, h_pic]))
        return None

    # -- groups ------------------------------------------------------------------------------
    def chairs_at(self, table: Placed, chair: FurnitureModel, sides: tuple[int, ...] = (0, 1),
                  per_side: int | None = None, max_per_side: int = 8) -> int:
        """Rows of identical ``chair``s along the table's sides (0: its front, -y; 1: its back;
        2, 3: the ends), ``per_side`` each or as many as fit, facing the table, seats pushed
        under the top as far as the chair's parts above the top's underside allow."""
        ce = chair.entry
        cmesh = load_mesh(ce, self.furniture_dir)
        top_under = table.size[2] - 0.06
        tall = cmesh.vertices[cmesh.vertices[:, 2] > top_under - 0.02]
        # Distance from the chair's front (local -y) to the front of its tall parts.
        clear = (tall[:, 1].min() + ce.depth / 2) if len(tall) else ce.depth
        tuck = float(np.clip(clear - 0.03, 0.0, 0.25)) * self.rng.uniform(0.3, 1.0)
        w, d = table.size[0], table.size[1]
        t_index = self.objects.index(table)
        c, s = math.cos(table.yaw), math.sin(table.yaw)
        rot = np.array([[c, -s], [s, c]])
        gap = ce.width + self.rng.uniform(0.05, 0.25)
        count = 0
        for side in sides:
            length = w if side in (0, 1) else d
            n = per_side if per_side is not None else int(min(max_per_side, (length - 0.2) // gap))
            dist = (d if side in (0, 1) else w) / 2 + ce.depth / 2 - tuck
            face = {0: math.pi, 1: 0.0, 2: math.pi / 2, 3: -math.pi / 2}[side]
            for o in (np.arange(n) - (n - 1) / 2) * gap:
                local = {0: (o, -dist), 1: (o, dist), 2: (-dist, o), 3: (dist, o)}[side]
                xy = table.position[:2] + rot @ np.array(local)
                placed = self.add_model(chair, xy, table.yaw + face + self.rng.normal(0, 0.04),
                                        ignore=(t_index,) if tuck > 0 else ())
                count += placed is not None
        return count

    def desk_with_chair(self, desk: FurnitureModel, chair: FurnitureModel | None,
                        wall: int | None = None) -> Placed | None:
        placed = self.against_wall(desk, wall)
        if placed is not None and chair is not None:
            self.chairs_at(placed, chair, sides=(0,), per_side=1)
        return placed


# ---------------------------------------------------------------------------------------------
# Recipes per room type


def _fill_walls(lay: _Layout, kinds: list[tuple[str, str | None]], count: int) -> None:
    for _ in range(count):
        placement, label = kinds[int(lay.rng.integers(len(kinds)))]
        spec = lay.pick(placement, label)
        if spec is None:
            continue
        anchor = lay.against_wall(spec)
        # Often a second identical or related piece touches it: contact along the wall.
        if anchor is not None and lay.rng.random() < 0.35:
            lay.beside(anchor, spec, int(lay.rng.choice([-1, 1])))


def _bedroom(lay: _Layout) -> None:
    bed = lay.pick("wall", "bed")
    placed = lay.against_wall(bed) if bed else None
    stand = lay.pick("bedside")
    if placed is not None and stand is not None:
        for side in (-1, 1):
            if lay.rng.random() < 0.8:
                lay.beside(placed, stand, side, gap=float(lay.rng.uniform(0, 0.03)))
    for _ in range(int(lay.rng.integers(1, 3))):
        spec = lay.pick("wall", "cabinet")
        if spec:
            lay.against_wall(spec)
    if lay.rng.random() < 0.6:
        lay.desk_with_chair(lay.pick("desk"), lay.pick("seat"))
    _fill_walls(lay, [("wall", "bookshelf"), ("wall", "otherfurniture"), ("free", "chair")],
                int(lay.rng.integers(0, 3)))


def _office(lay: _Layout) -> None:
    chair = lay.pick("seat")
    for _ in range(int(lay.rng.integers(2, 6))):
        desk = lay.pick("desk")
        if desk is None:
            break
        if lay.rng.random() < 0.4:   # two desks back to back in the room, chairs on both sides
            first = lay.free_spot(desk, margin=0.8)
            if first is None:
                continue
            back = np.array([-math.sin(first.yaw), math.cos(first.yaw)])
            second = lay.add_model(desk, first.position[:2] + back * first.size[1], first.yaw + math.pi)
            for d in (first, second):
                if d is not None and chair is not None:
                    lay.chairs_at(d, chair, sides=(0,), per_side=1)
        else:
            lay.desk_with_chair(desk, chair)
    _fill_walls(lay, [("wall", "cabinet"), ("wall", "bookshelf"), ("wall", "otherfurniture")],
                int(lay.rng.integers(1, 5)))
    if lay.rng.random() < 0.5:
        table = lay.pick("table")
        placed = lay.free_spot(table, margin=0.7) if table else None
        if placed is not None and chair is not None:
            lay.chairs_at(placed, chair)


def _conference(lay: _Layout) -> None:
    table = lay.pick("table", max_width=lay.depth - 1.6)
    chair = lay.pick("seat")
    if table is not None:
        # The long side along the room's long axis.
        yaw = 0.0 if lay.width >= lay.depth else math.pi / 2
        placed = lay.free_spot(table, yaw=yaw, margin=0.7)
        if placed is not None and chair is not None:
            lay.chairs_at(placed, chair, sides=(0, 1, 2, 3) if lay.rng.random() < 0.4 else (0, 1))
    _fill_walls(lay, [("wall", "cabinet"), ("wall", "otherfurniture"), ("seat", None)],
                int(lay.rng.integers(1, 4)))


def _living(lay: _Layout) -> None:
    sofa = lay.pick("wall", "sofa")
    placed = lay.against_wall(sofa) if sofa else None
    coffee = lay.pick("coffee") or lay.pick("table", max_width=1.3)
    if placed is not None and coffee is not None:
        c, s = math.cos(placed.yaw), math.sin(placed.yaw)
        front = np.array([s, -c])  # the sofa's front direction
        dist = placed.size[1] / 2 + lay.rng.uniform(0.35, 0.6) + coffee.entry.depth / 2
        table = lay.add_model(coffee, placed.position[:2] + front * dist, placed.yaw)
        arm = lay.pick("free", "chair")
        if table is not None and arm is not None:
            for side in (-1, 1):
                if lay.rng.random() < 0.6:
                    right = np.array([c, s])
                    xy = table.position[:2] + right * side * (table.size[0] / 2 + arm.entry.depth / 2 + 0.25)
                    lay.add_model(arm, xy, placed.yaw - side * math.pi / 2)  # facing the table
    _fill_walls(lay, [("wall", "cabinet"), ("wall", "bookshelf"), ("wall", "otherfurniture"),
                      ("wall", "sofa")], int(lay.rng.integers(1, 4)))
    if lay.rng.random() < 0.3:
        spec = lay.pick("free", "otherfurniture")
        if spec:
            lay.free_spot(spec, margin=0.4)


def _kitchen_row(lay: _Layout) -> None:
    """Touching lower cabinets along one wall, a counter slab on them, wall cabinets above,
    a fridge at one end."""
    lowers = [s for s in lay.specs if s.placement == "kitchen" and s.entry.height < 1.0]
    if not lowers:
        return
    k = int(lay.rng.integers(4))
    wall = lay.walls[k]
    n = int(lay.rng.integers(2, 7))
    start = float(lay.rng.uniform(0.0, 0.4))
    s = start
    row = []
    for _ in range(n):
        spec = lowers[int(lay.rng.integers(len(lowers)))]
        if s + spec.entry.width > wall.length:
            break
        placed = lay.against_wall(spec, k, s + spec.entry.width / 2)
        if placed is None:
            break
        row.append(placed)
        s += spec.entry.width
    if not row:
        return
    top = max(p.size[2] for p in row)
    depth = max(p.size[1] for p in row) + 0.03
    length = s - start
    slab = float(lay.rng.uniform(0.03, 0.05))
    color = lay.rng.choice([[220, 220, 215], [60, 60, 62], [150, 110, 70], [180, 170, 150]])
    mid = start + length / 2
    xy = wall.point(mid, depth / 2)
    box = _Box(xy, np.array([length / 2, depth / 2]), wall.yaw(), top, top + slab)
    if lay.free(box):   # resting on the cabinets (touching), clear of everything else
        mesh = box_mesh((length, depth, slab), plain(color, "worktop"))
        lay.add("counter", mesh, np.array([xy[0], xy[1], top]), wall.yaw(), _LABEL["counter"],
                np.array([length, depth, slab]))
    highs = [sp for sp in lay.specs if sp.placement == "high"]
    if highs:
        s = start
        while True:
            spec = highs[int(lay.rng.integers(len(highs)))]
            if s + spec.entry.width > start + length:
                break
            lay.against_wall(spec, k, s + spec.entry.width / 2)
            s += spec.entry.width
    fridge = lay.pick("wall", "refrigerator")
    if fridge is not None:
        lay.beside(row[-1], fridge, side=-1 if row[-1].along < row[0].along else 1)  # type: ignore


def _kitchen(lay: _Layout) -> None:
    _kitchen_row(lay)
    if lay.rng.random() < 0.5:
        _kitchen_row(lay)
    table = lay.pick("table", max_width=1.8)
    chair = lay.pick("seat")
    placed = lay.free_spot(table, margin=0.6) if table else None
    if placed is not None and chair is not None:
        lay.chairs_at(placed, chair, sides=(0, 1, 2, 3))
    if lay.rng.random() < 0.4:
        spec = lay.pick("free", "counter")
        if spec:
            lay.free_spot(spec, margin=0.7)


def _shower_curtain_mesh(rng: np.random.Generator, width: float, height: float) -> Mesh:
    """A pleated sheet: vertical strips zig-zagging +-2 cm about y = 0, bottom at z = 0."""
    n = max(2, int(width / 0.06))
    x = np.linspace(-width / 2, width / 2, n + 1)
    y = np.where(np.arange(n + 1) % 2 == 0, -0.02, 0.02)
    quads = [[(x[i], y[i], 0), (x[i + 1], y[i + 1], 0), (x[i + 1], y[i + 1], height), (x[i], y[i], height)]
             for i in range(n)]
    color = rng.choice([[235, 235, 240], [170, 200, 230], [230, 200, 210], [200, 225, 200]])
    return _quads_mesh(np.array(quads, float), plain(color * rng.uniform(0.9, 1.05), "curtain"))


def _bathroom(lay: _Layout) -> None:
    for label, p in (("toilet", 1.0), ("sink", 1.0), ("bathtub", 0.7), ("cabinet", 0.4)):
        if lay.rng.random() < p:
            spec = lay.pick("wall", label)
            placed = lay.against_wall(spec) if spec else None
            if label == "bathtub" and placed is not None and lay.rng.random() < 0.7:
                # A shower curtain hanging along the tub's open front edge, above its rim.
                c, s = math.cos(placed.yaw), math.sin(placed.yaw)
                front = np.array([s, -c])
                xy = placed.position[:2] + front * (placed.size[1] / 2 - 0.06)
                z0 = placed.size[2] + 0.05
                height = min(2.0, lay.height - 0.1) - z0
                box = _Box(xy, np.array([placed.size[0] / 2, 0.03]), placed.yaw, z0, z0 + height)
                if height > 0.5 and lay.free(box):
                    lay.add("shower curtain", _shower_curtain_mesh(lay.rng, placed.size[0], height),
                            np.array([xy[0], xy[1], z0]), placed.yaw, _LABEL["shower curtain"],
                            np.array([placed.size[0], 0.06, height]))


def _classroom(lay: _Layout) -> None:
    desk = lay.pick("desk", max_width=1.5)
    chair = lay.pick("seat")
    if desk is None:
        return
    e = desk.entry
    pitch_x = e.width + lay.rng.uniform(0.3, 0.8)
    pitch_y = e.depth + 0.9
    nx = int((lay.width - 1.0) // pitch_x)
    ny = int((lay.depth - 2.0) // pitch_y)
    for i in range(nx):
        for j in range(ny):
            xy = np.array([0.5 + pitch_x * (i + 0.5), 0.6 + pitch_y * j + e.depth / 2])
            placed = lay.add_model(desk, xy, math.pi)  # front towards +y: students face north
            if placed is not None and chair is not None:
                lay.chairs_at(placed, chair, sides=(0,), per_side=1)
    _fill_walls(lay, [("wall", "cabinet"), ("wall", "bookshelf")], int(lay.rng.integers(1, 3)))


_FILLERS = {  # (placement, class) drawn at random until the room's instance target is met
    "bedroom": [("wall", "cabinet"), ("wall", "bookshelf"), ("free", "chair"), ("seat", None),
                ("wall", "otherfurniture"), ("picture", None), ("desk", None)],
    "office": [("desk", None), ("wall", "cabinet"), ("wall", "bookshelf"), ("seat", None),
               ("free", "otherfurniture"), ("picture", None), ("wall", "otherfurniture")],
    "conference": [("seat", None), ("wall", "cabinet"), ("wall", "otherfurniture"), ("picture", None),
                   ("wall", "bookshelf")],
    "living": [("free", "chair"), ("wall", "sofa"), ("wall", "cabinet"), ("wall", "bookshelf"),
               ("picture", None), ("free", "otherfurniture"), ("wall", "otherfurniture"), ("table", None)],
    "kitchen": [("wall", "refrigerator"), ("wall", "cabinet"), ("seat", None), ("free", "otherfurniture"),
                ("picture", None), ("table", None)],
    "bathroom": [("wall", "cabinet"), ("wall", "toilet"), ("wall", "sink"), ("free", "otherfurniture"),
                 ("wall", "otherfurniture")],
    "classroom": [("wall", "cabinet"), ("wall", "bookshelf"), ("seat", None), ("picture", None)],
}


_MAX_PER_ROOM = {"refrigerator": 1, "bathtub": 1, "toilet": 2, "sink": 2, "bed": 2, "sofa": 3,
                 "counter": 3}
"""Classes that a filler may not add beyond these counts (rooms do not have five fridges)."""


def _fill(lay: _Layout, target: int, attempts: int = 60) -> None:
    """Add objects typical of the room type until ``target`` instances or ``attempts`` tries."""
    options = _FILLERS[lay.room_type]
    for _ in range(attempts):
        if sum(1 for o in lay.objects if o.instance >= 0) >= target:
            return
        placement, label = options[int(lay.rng.integers(len(options)))]
        if label in _MAX_PER_ROOM and \
                sum(1 for o in lay.objects if o.label == _LABEL[label]) >= _MAX_PER_ROOM[label]:
            continue
        if placement == "picture":
            lay.picture()
            continue
        spec = lay.pick(placement, label)
        if spec is None:
            continue
        if placement == "desk":
            lay.desk_with_chair(spec, lay.pick("seat"))
        elif placement == "table":
            table = lay.free_spot(spec, margin=0.6)
            chair = lay.pick("seat")
            if table is not None and chair is not None:
                lay.chairs_at(table, chair, sides=(0, 1))
        elif placement in ("wall", "bedside"):
            anchor = lay.against_wall(spec)
            if anchor is not None and label not in _MAX_PER_ROOM and lay.rng.random() < 0.35:
                lay.beside(anchor, spec, int(lay.rng.choice([-1, 1])))   # a touching twin
        elif placement == "seat" and lay.rng.random() < 0.5:      # a loose chair against a wall
            lay.against_wall(spec, gap=float(lay.rng.uniform(0.0, 0.1)))
        else:
            lay.free_spot(spec, margin=0.3)


_RECIPES = {"bedroom": _bedroom, "office": _office, "conference": _conference, "living": _living,
            "kitchen": _kitchen, "bathroom": _bathroom, "classroom": _classroom}


# ---------------------------------------------------------------------------------------------
# Clutter


_NO_CLUTTER = {_LABEL[n] for n in ("door", "window", "curtain", "picture", "shower curtain")}
"""Classes that carry no props."""

_PROP_PLACE = {"bed": "bed", "sofa": "bed", "bookshelf": "shelf", "desk": "desk"}
"""The prop mix (``props.PROP_MIX``) on each supporting class; other classes get ``top``."""

_MODEL_SHARE = 0.2
"""Share of props that are library models (the rest are procedural)."""

_SUPPORTS: dict[str, Supports] = {}
"""Level surfaces per library model id: they depend on the mesh only."""


def _supports(obj: Placed) -> Supports:
    if not obj.model_id:
        return Supports(obj.mesh)
    if obj.model_id not in _SUPPORTS:
        _SUPPORTS[obj.model_id] = Supports(obj.mesh)
    return _SUPPORTS[obj.model_id]


def _prop(lay: _Layout, place: str) -> tuple[str, Mesh, np.ndarray, str]:
    """Name, mesh, footprint-and-height size and model id of a prop for ``place``: a library
    model of the csv's matching placement (``floor`` or ``top``) or a procedural one."""
    specs = [s for s in lay.specs if s.placement == ("floor" if place == "floor" else "top")]
    if specs and lay.rng.random() < _MODEL_SHARE:
        e = specs[int(lay.rng.integers(len(specs)))].entry
        return e.name, load_mesh(e, lay.furniture_dir), np.array([e.width, e.depth, e.height]), e.model_id
    name, mesh = random_prop(lay.rng, place)
    v = mesh.vertices
    return name, mesh, np.array([*(2 * np.abs(v[:, :2]).max(axis=0)), v[:, 2].max()]), ""


def _on_surface(lay: _Layout, index: int, sup: Supports, level: Level, place: str,
                tries: int = 4) -> Placed | None:
    """A prop resting on ``level`` of object ``index``, clear of its mesh and of every box."""
    obj = lay.objects[index]
    name, mesh, size, model_id = _prop(lay, place)
    c, s = math.cos(obj.yaw), math.sin(obj.yaw)
    rot = np.array([[c, -s], [s, c]])
    for _ in range(tries):
        local_yaw = float(lay.rng.integers(4) * math.pi / 2 + lay.rng.normal(0, 0.15))
        center = level.random_point(lay.rng) + lay.rng.uniform(-level.cell / 2, level.cell / 2, 2)
        if not sup.fits(level, center, size[:2] / 2, local_yaw, size[2]):
            continue
        xy, z = obj.position[:2] + rot @ center, obj.position[2] + level.z
        box = _Box(xy, size[:2] / 2, obj.yaw + local_yaw, z, z + size[2])
        if lay.free(box, ignore=(index,)):
            return lay.add(name, mesh, np.array([xy[0], xy[1], z]), box.yaw, IGNORE_LABEL, size, model_id)
    return None


def _on_floor(lay: _Layout, tries: int = 4) -> Placed | None:
    """A prop on the floor, mostly along a wall, clear of every box."""
    name, mesh, size, model_id = _prop(lay, "floor")
    half = size[:2] / 2
    for _ in range(tries):
        if lay.rng.random() < 0.7:
            wall = lay.walls[int(lay.rng.integers(4))]
            xy = wall.point(lay.rng.uniform(0, wall.length), half[1] + lay.rng.uniform(0, 0.15))
            yaw = wall.yaw() + lay.rng.normal(0, 0.1)
        else:
            xy, yaw = lay.rng.uniform([0, 0], [lay.width, lay.depth]), lay.rng.uniform(0, 2 * math.pi)
        box = _Box(xy, half, float(yaw), 0.0, size[2])
        if lay.free(box):
            return lay.add(name, mesh, np.array([xy[0], xy[1], 0.0]), box.yaw, IGNORE_LABEL, size, model_id)
    return None


def _clutter(lay: _Layout, min_height: float = 0.1) -> None:
    """Ignore-labelled props on the level surfaces of the furniture (above ``min_height``) and
    on the floor; a per-room density makes some rooms tidy and others crowded."""
    density = lay.rng.uniform(6.0, 20.0)    # placement attempts per m² of surface
    for index, obj in enumerate(list(lay.objects)):
        if obj.label in _NO_CLUTTER:
            continue
        sup = _supports(obj)
        place = _PROP_PLACE.get(CLASS_NAMES[obj.label], "top")
        for level in sup.levels:
            if obj.position[2] + level.z >= min_height:
                for _ in range(int(lay.rng.poisson(density * level.area))):
                    _on_surface(lay, index, sup, level, place)
    for _ in range(int(lay.rng.poisson(density * lay.width * lay.depth / 5))):
        _on_floor(lay)


# ---------------------------------------------------------------------------------------------
# Walls, floor, scan path


def _wall_meshes(lay: _Layout, rng: np.random.Generator) -> list[Placed]:
    """Inner wall faces with holes for the openings, plus the jambs of each opening."""
    color = rng.choice([[235, 232, 225], [225, 225, 230], [240, 235, 215], [200, 215, 225],
                        [230, 215, 200]]) * rng.uniform(0.9, 1.05)
    paint = plain(np.clip(color, 0, 255), "wall")
    out = []
    H, t = lay.height, lay.thickness
    for k, w in enumerate(lay.walls):
        holes = [o for o in lay.openings if o.wall == k]
        ss = sorted({0.0, w.length, *[o.s0 for o in holes], *[o.s1 for o in holes]})
        zz = sorted({0.0, H, *[o.z0 for o in holes], *[o.z1 for o in holes]})
        quads = []
        for a, b in zip(ss[:-1], ss[1:]):
            for c, d in zip(zz[:-1], zz[1:]):
                sm, zm = (a + b) / 2, (c + d) / 2
                if any(o.s0 < sm < o.s1 and o.z0 < zm < o.z1 for o in holes):
                    continue
                quads.append([(a, 0, c), (b, 0, c), (b, 0, d), (a, 0, d)])
        for o in holes:  # jambs: (s, depth behind the face, z)
            quads.append([(o.s0, 0, o.z0), (o.s0, t, o.z0), (o.s0, t, o.z1), (o.s0, 0, o.z1)])
            quads.append([(o.s1, 0, o.z0), (o.s1, t, o.z0), (o.s1, t, o.z1), (o.s1, 0, o.z1)])
            quads.append([(o.s0, 0, o.z1), (o.s1, 0, o.z1), (o.s1, t, o.z1), (o.s0, t, o.z1)])
            if o.z0 > 0:
                quads.append([(o.s0, 0, o.z0), (o.s1, 0, o.z0), (o.s1, t, o.z0), (o.s0, t, o.z0)])
        q = np.array(quads, dtype=np.float64)
        xy = w.origin + q[..., :1] * w.along - q[..., 1:2] * w.inward
        world = np.concatenate([xy, q[..., 2:3]], axis=-1)
        out.append(Placed(f"wall {k}", _quads_mesh(world, paint), np.zeros(3), 0.0, _LABEL["wall"], -1,
                          np.array([w.length, t, H])))
    return out


def _floor(lay: _Layout, rng: np.random.Generator) -> Placed:
    tex, period = _floor_texture(rng)
    quad = np.array([[[0, 0, 0], [lay.width, 0, 0], [lay.width, lay.depth, 0], [0, lay.depth, 0]]], float)
    mesh = _quads_mesh(quad, Material("floor", np.full(3, 128, np.uint8), tex), uv_scale=period)
    return Placed("floor", mesh, np.zeros(3), 0.0, _LABEL["floor"], -1,
                  np.array([lay.width, lay.depth, 0.0]))


def _scan_path(lay: _Layout, rng: np.random.Generator, count: int, cam_height: tuple[float, float],
               robot_radius: float = 0.25, cell: float = 0.05) -> np.ndarray:
    """Viewpoints spread over the free floor (farthest-point order, then a nearest-neighbour
    tour), at one camera height per room in ``cam_height`` with +-3 cm wobble."""
    nx, ny = int(lay.width / cell), int(lay.depth / cell)
    gx, gy = np.meshgrid((np.arange(nx) + 0.5) * cell, (np.arange(ny) + 0.5) * cell, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    ok = (pts[:, 0] > robot_radius) & (pts[:, 0] < lay.width - robot_radius) & \
         (pts[:, 1] > robot_radius) & (pts[:, 1] < lay.depth - robot_radius)
    for obj in lay.objects:
        if obj.position[2] > 1.0:
            continue   # wall-mounted above the robot, or clutter up on furniture
        box = obj.rectangle()
        local = (pts - box.center) @ box.axes().T
        ok &= ~((np.abs(local) <= box.half + robot_radius).all(axis=1))
    free = pts[ok]
    if len(free) == 0:
        raise LayoutError("no free floor left for the scanning robot")
    chosen = [int(rng.integers(len(free)))]
    dist = np.linalg.norm(free - free[chosen[0]], axis=1)
    for _ in range(min(count, len(free)) - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(free - free[chosen[-1]], axis=1))
    xy = free[chosen]
    order = [0]
    left = set(range(1, len(xy)))
    while left:
        last = xy[order[-1]]
        nxt = min(left, key=lambda i: float(np.linalg.norm(xy[i] - last)))
        order.append(nxt)
        left.remove(nxt)
    h = rng.uniform(*cam_height)
    z = np.clip(h + rng.normal(0, 0.03, len(order)), cam_height[0], cam_height[1])
    return np.column_stack([xy[order], z])


def make_room(seed: int, room_type: str | None = None, *, num_viewpoints: int = 12,
              cam_height: tuple[float, float] = (1.2, 1.6), max_instances: int = 40,
              clutter: bool = True, class_table: "Path | str" = CLASS_TABLE,
              furniture_dir: "Path | str" = FURNITURE_DIR) -> Room:
    """The room of ``seed``: type (random unless given), size, furniture, clutter, scan path."""
    rng = np.random.default_rng(seed)
    kind = room_type or ROOM_TYPES[int(rng.integers(len(ROOM_TYPES)))]
    if kind not in ROOM_TYPES:
        raise LayoutError(f"unknown room type {kind!r}; choose from {ROOM_TYPES}")
    specs = load_class_table(class_table, furniture_dir)
    (w0, w1), (d0, d1) = _SIZES[kind]
    lay = _Layout(rng, specs, kind, float(rng.uniform(w0, w1)), float(rng.uniform(d0, d1)),
                  float(rng.uniform(2.5, 3.0)), float(rng.uniform(0.12, 0.25)), furniture_dir)
    # Doors first (they keep their swing free), then windows, then the furniture.
    door = lay.pick("door")
    for _ in range(1 + int(rng.random() < 0.25 and kind != "bathroom")):
        if door is not None:
            lay.opening(door, int(rng.integers(4)))
    window = lay.pick("window")
    for _ in range(int(rng.integers(0, 2 if kind == "bathroom" else 4))):
        if window is not None:
            placed = lay.opening(window, int(rng.integers(4)))
            if placed is not None and kind in ("bedroom", "living", "office") and rng.random() < 0.6:
                lay.curtains(placed)
    _RECIPES[kind](lay)
    for _ in range(int(rng.integers(0, 3))):
        lay.picture()
    target = int(np.clip(lay.width * lay.depth * rng.uniform(0.4, 0.9), 5, max_instances))
    _fill(lay, target)
    lay.trim(max_instances)
    if clutter:
        _clutter(lay)
    objects = [*_wall_meshes(lay, rng), _floor(lay, rng), *lay.objects]
    viewpoints = _scan_path(lay, rng, num_viewpoints, cam_height)
    return Room(kind, lay.width, lay.depth, lay.height, objects, viewpoints)
