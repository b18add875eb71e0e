"""Simulated scanning of a room: keep the surface points a robot's depth camera would see.

1. Every surface of the room is sampled evenly, so the map has the ~2 cm density of a
   voxel-filtered SLAM map: walls, floor and boxes on a jittered ``spacing`` grid, furniture
   meshes with 3 random points per ``spacing``² thinned to one per ``spacing`` voxel of each
   object. Glass (opacity < 0.5) is neither sampled nor occludes.
2. From each viewpoint of the robot's path (``Room.viewpoints``, 1.2–1.6 m high) a point counts
   as seen if it is within range (0.3–5 m), inside the camera's vertical reach (-65°..+40°,
   the camera pans freely), not seen at a grazing angle (|cos| >= 0.15), and the segment from
   the camera to it hits no other surface: an exact occlusion ray cast with Embree
   (``embreex``). The union over viewpoints is the accumulated map; unseen points (backs of
   furniture against walls, floor under beds, insides of cabinets) are dropped.
3. Each seen point moves along the ray from the first viewpoint that saw it by Gaussian range
   noise with the Kinect model sigma(d) = 1.2 mm + 1.9 mm * (d - 0.4 m)² (Nguyen et al. 2012),
   and gets its material colour (texture or diffuse) with simple shading.
4. Real maps are fused from many camera frames, and show it; so, cheaply: each viewpoint has
   its own exposure and white balance (on a per-room balance), applied to the points it saw
   first; colours get a per-room contrast, a blotchy texture (noise per few-cm cell) and
   per-point noise; each viewpoint's points are offset by a small pose drift, and a share of
   points is repeated with the next viewpoint's drift, so surfaces seen from two places come
   out doubled; small patches are dropped as holes. ``noise_scale`` scales the geometric part
   (range noise, drift, doubling, holes): 0 gives exact surfaces.

Why Embree: ray casting is exact, where a per-viewpoint spherical z-buffer over the samples
is not (near surfaces are too sparse to cover their bins, so farther ones leak through, while
big bins hide points beside depth edges; docs/measurements.md has the comparison). ``embreex``
is a small wheel; open3d's RaycastingScene would do the same for a far larger dependency.
Implements no paper equation; it makes the input the paper's method sees (§III-A).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ssen_ros.synthetic.furniture import Mesh
from ssen_ros.synthetic.room import Room
from ssen_ros.rotations import rotation_z

MIN_RANGE, MAX_RANGE = 0.3, 5.0
ELEVATION = (-65.0, 40.0)
MIN_COS = 0.15


@dataclass
class Scan:
    """The scanned map: float32 points, uint8 colours, train ids and instance ids (-1 none)."""

    points: np.ndarray
    colors: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def sample_surface(mesh: Mesh, spacing: float, rng: np.random.Generator,
                   per_cell: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on the opaque faces: (points (P, 3), face index (P,), barycentric weights (P, 3)).

    Meshes of parallelograms (``Mesh.quad_pairs``: walls, floor, boxes) get one jittered point
    per ``spacing`` x ``spacing`` cell; others about ``per_cell`` uniform random points per
    ``spacing``² (thinned per voxel afterwards).
    """
    if mesh.quad_pairs:
        return _sample_quads(mesh, spacing, rng)
    areas = mesh.face_areas() * (mesh.face_opacity >= 0.5)
    total = float(areas.sum())
    if total <= 0:
        return np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros((0, 3))
    n = int(rng.poisson(total * per_cell / spacing ** 2))
    face = np.searchsorted(np.cumsum(areas) / total, rng.random(n), side="right")
    face = np.minimum(face, len(areas) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    points = np.einsum("pk,pkj->pj", bary, mesh.vertices[mesh.faces[face]])
    return points, face, bary


def _sample_quads(mesh: Mesh, spacing: float, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jittered-grid points on parallelograms a-b-c-d stored as faces (a,b,c), (a,c,d)."""
    first = mesh.faces[0::2]
    a, b, c = (mesh.vertices[first[:, k]] for k in range(3))
    d = mesh.vertices[mesh.faces[1::2, 2]]
    opaque = mesh.face_opacity[0::2] >= 0.5
    nu = np.where(opaque, np.ceil(np.linalg.norm(b - a, axis=1) / spacing), 0).astype(np.int64)
    nv = np.where(opaque, np.ceil(np.linalg.norm(d - a, axis=1) / spacing), 0).astype(np.int64)
    counts = nu * nv
    quad = np.repeat(np.arange(len(first)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    fu = (k % nu[quad] + rng.random(len(k))) / nu[quad]
    fv = (k // nu[quad] + rng.random(len(k))) / nv[quad]
    upper = fv > fu   # in triangle (a, c, d)
    bary = np.where(upper[:, None], np.stack([1 - fv, fu, fv - fu], 1), np.stack([1 - fu, fu - fv, fv], 1))
    face = 2 * quad + upper
    points = np.einsum("pk,pkj->pj", bary, mesh.vertices[mesh.faces[face]])
    return points, face, bary


def _voxel_keep(points: np.ndarray, spacing: float) -> np.ndarray:
    """Indices of one point per occupied voxel of size ``spacing`` (the first sampled)."""
    if len(points) == 0:
        return np.zeros(0, np.int64)
    keys = np.floor(points / spacing).astype(np.int64)
    keys -= keys.min(axis=0)
    dims = keys.max(axis=0) + 1
    flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    _, first = np.unique(flat, return_index=True)  # samples come in random order already
    return np.sort(first)


def scan_room(room: Room, seed: int, *, spacing: float = 0.02, noise_scale: float = 1.0,
              max_range: float = MAX_RANGE) -> Scan:
    """Scan ``room`` from its viewpoints; deterministic for a given ``seed``."""
    try:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("scanning needs the 'embreex' package (pip install 'ssen_ros[synthetic]')") from e

    rng = np.random.default_rng(seed)
    pts, cols, nrm, sem, ins, tris = [], [], [], [], [], []
    for obj in room.objects:
        rot = rotation_z(obj.yaw)
        local, face, bary = sample_surface(obj.mesh, spacing, rng)
        keep = np.arange(len(local)) if obj.mesh.quad_pairs else \
            _voxel_keep(local @ rot.T + obj.position, spacing)
        face, bary = face[keep], bary[keep]
        pts.append(local[keep] @ rot.T + obj.position)
        cols.append(obj.mesh.colors_at(face, bary))
        nrm.append(obj.mesh.face_normals()[face] @ rot.T)
        sem.append(np.full(len(keep), obj.label, np.int64))
        ins.append(np.full(len(keep), obj.instance, np.int64))
        opaque = obj.mesh.face_opacity >= 0.5
        tris.append((obj.mesh.vertices[obj.mesh.faces[opaque]] @ rot.T + obj.position))
    points = np.concatenate(pts)
    normals = np.concatenate(nrm)

    scene = rtcore_scene.EmbreeScene()
    TriangleMesh(scene, np.concatenate(tris).astype(np.float32))

    first = np.full(len(points), np.inf)       # distance from the first viewpoint that saw it
    ray = np.zeros((len(points), 3))           # unit ray from that viewpoint
    viewer = np.full(len(points), -1)          # index of that viewpoint
    remaining = np.arange(len(points))
    lo, hi = np.radians(ELEVATION)
    for v, view in enumerate(room.viewpoints):
        delta = points[remaining] - view
        dist = np.sqrt(np.einsum("ij,ij->i", delta, delta))
        sin_elev = delta[:, 2] / np.maximum(dist, 1e-9)
        ok = (dist > MIN_RANGE) & (dist < max_range) & (sin_elev >= math.sin(lo)) & (sin_elev <= math.sin(hi))
        direction = delta[ok] / dist[ok, None]
        idx = remaining[ok]
        good = np.abs(np.einsum("ij,ij->i", direction, normals[idx])) >= MIN_COS
        idx, direction, d = idx[good], direction[good], dist[ok][good]
        if len(idx) == 0:
            continue
        origins = np.broadcast_to(view.astype(np.float32), (len(idx), 3)).copy()
        hit = scene.run(origins, direction.astype(np.float32), dists=(d - 0.005).astype(np.float32),
                        query="OCCLUDED")
        visible = hit == -1
        first[idx[visible]] = d[visible]
        ray[idx[visible]] = direction[visible]
        viewer[idx[visible]] = v
        remaining = remaining[~np.isfinite(first[remaining])]
    seen = np.flatnonzero(np.isfinite(first))

    d = first[seen]
    sigma = noise_scale * (0.0012 + 0.0019 * (d - 0.4) ** 2)
    out_points = points[seen] + ray[seen] * (rng.normal(size=len(seen)) * sigma)[:, None]
    light = np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0])
    shade = 0.6 + 0.4 * np.abs(normals[seen] @ light)
    rgb = np.concatenate(cols)[seen] * shade[:, None]
    labels = np.stack([np.concatenate(sem)[seen], np.concatenate(ins)[seen]], axis=1)
    out_points, rgb, labels, view = _fused(out_points, rgb, labels, viewer[seen], len(room.viewpoints),
                                           rng, noise_scale)
    rgb = _camera_colors(rgb, view, out_points, len(room.viewpoints), rng)
    return Scan(out_points.astype(np.float32), np.clip(rgb, 0, 255).astype(np.uint8), labels[:, 0], labels[:, 1])


def _fused(points: np.ndarray, rgb: np.ndarray, labels: np.ndarray, view: np.ndarray, views: int,
           rng: np.random.Generator, noise_scale: float, drift: float = 0.004,
           doubled: tuple[float, float] = (0.0, 0.1), holes: tuple[float, float] = (0.01, 0.05)
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fusion artefacts: each view's points shifted by its pose drift (about ``drift`` m per axis,
    at most 3x), a per-room share in ``doubled`` repeated with the next view's drift, and a
    per-room share in ``holes`` of small square patches (two grids, 6-20 cm) dropped."""
    offsets = np.clip(rng.normal(0, drift, (views, 3)), -3 * drift, 3 * drift) * noise_scale
    share = rng.uniform(*doubled) * noise_scale if views > 1 else 0.0
    again = np.flatnonzero(rng.random(len(points)) < share)
    view = np.concatenate([view, (view[again] + 1) % views])
    points = np.concatenate([points, points[again]]) + offsets[view]
    rgb, labels = np.concatenate([rgb, rgb[again]]), np.concatenate([labels, labels[again]])
    drop = np.zeros(len(points), bool)
    for _ in range(2):
        cell = rng.uniform(0.06, 0.2)
        keys = np.floor((points + rng.uniform(0, cell, 3)) / cell).astype(np.int64)
        _, cell_of = np.unique(keys, axis=0, return_inverse=True)
        drop |= (rng.random(cell_of.max(initial=-1) + 1) < rng.uniform(*holes) * noise_scale / 2)[cell_of.ravel()]
    keep = ~drop
    return points[keep], rgb[keep], labels[keep], view[keep]


def _camera_colors(rgb: np.ndarray, view: np.ndarray, points: np.ndarray, views: int,
                   rng: np.random.Generator, cell: float = 0.04) -> np.ndarray:
    """Colours as fused camera frames give them: a per-room balance times each view's exposure
    and white balance, a per-room contrast about the mean, a blotchy texture (a random gain
    per ``cell``) and per-point noise."""
    balance = rng.uniform(0.88, 1.08) * rng.uniform(0.97, 1.03, 3)
    gains = balance * rng.uniform(0.75, 1.2, (views, 1)) * rng.uniform(0.92, 1.08, (views, 3))
    rgb = rgb * gains[view]
    mean = rgb.mean(axis=0) if len(rgb) else np.zeros(3)
    rgb = mean + (rgb - mean) * rng.uniform(1.1, 1.5)
    _, cell_of = np.unique(np.floor(points / cell).astype(np.int64), axis=0, return_inverse=True)
    blotch = 1.0 + rng.uniform(0.03, 0.12) * rng.standard_normal(cell_of.max(initial=-1) + 1)
    return rgb * blotch[cell_of.ravel(), None] + rng.normal(0, rng.uniform(3.0, 8.0), rgb.shape)
