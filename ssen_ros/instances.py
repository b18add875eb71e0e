"""Instance records: from clusters to objects with a class, a score and boxes (paper §III-B).

The authors' code (96lives/ssen at ec4006e) does not say how a cluster gets its class and confidence. We use
the majority vote of the semantic network's per-voxel predictions inside the cluster. The score
is the mean softmax probability of that class over the cluster's voxels, times a size
confidence A / (A + half_area), A the cluster's surface (voxels x voxel area): a fragment of an
object, or a speck of noise that formed a cluster, ranks below whole objects of the same class
confidence; ``ssen evaluate --data`` measures its share (the row with ``score_half_area`` 0).
Boxes are in the frame of the input points: an axis-aligned box, and an oriented box whose yaw
is the minimum-area rectangle of the footprint (rotating calipers on the xy convex hull), with
z extents from the points; objects stand on the floor, so yaw about z is the freedom that
matters to a planner.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from ssen_ros.classes import CLASS_NAMES
from ssen_ros.voxel import column_bounds


@dataclass
class Instance:
    """One segmented object. Lengths in metres, angles in radians, in the input cloud's frame."""

    id: int
    class_id: int
    class_name: str
    score: float
    point_count: int
    centroid: tuple[float, float, float]
    aabb_center: tuple[float, float, float]
    aabb_size: tuple[float, float, float]
    obb_center: tuple[float, float, float]
    obb_yaw: float
    """Rotation of the box's x axis about z, in (-pi/4, pi/4]; ``obb_size[0]`` lies along it."""
    obb_size: tuple[float, float, float]

    def to_dict(self) -> dict:
        return asdict(self)


def _tuple(v: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(a) for a in v)  # type: ignore[return-value]


def footprint_rectangle(xy: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Minimum-area rectangle around 2-D points: (centre (2,), yaw, size (2,))."""
    lo, hi = column_bounds(xy)
    try:
        hull = xy[ConvexHull(xy).vertices]
    except (QhullError, ValueError):  # fewer than 3 points, or all on a line
        return (lo + hi) / 2, 0.0, hi - lo
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    c, s = np.cos(angles), np.sin(angles)
    # hull points in each candidate frame: u along the edge, v across it
    u = hull[:, 0][None] * c[:, None] + hull[:, 1][None] * s[:, None]
    v = -hull[:, 0][None] * s[:, None] + hull[:, 1][None] * c[:, None]
    area = (u.max(1) - u.min(1)) * (v.max(1) - v.min(1))
    k = int(np.argmin(area))
    umid, vmid = (u[k].max() + u[k].min()) / 2, (v[k].max() + v[k].min()) / 2
    centre = np.array([umid * c[k] - vmid * s[k], umid * s[k] + vmid * c[k]])
    size = np.array([u[k].max() - u[k].min(), v[k].max() - v[k].min()])
    yaw = float(angles[k])  # in [0, pi/2)
    if yaw > np.pi / 4:  # report the equivalent box with yaw in (-pi/4, pi/4]
        yaw -= np.pi / 2
        size = size[::-1]
    return centre, yaw, size


def make_instances(points: np.ndarray, point_instance: np.ndarray, voxel_instance: np.ndarray,
                   voxel_probs: np.ndarray, voxel_area: float = 0.0,
                   half_area: float = 0.0, geometry: bool = True) -> list[Instance]:
    """Records for clusters 0..K-1.

    ``points`` (N,3) and ``point_instance`` (N,) give the geometry; ``voxel_instance`` (M,) and
    the semantic softmax ``voxel_probs`` (M, C) give class and score; a cluster of area
    ``half_area`` (m^2, voxel count x ``voxel_area``) has its score halved (0: no size factor).
    ``geometry=False`` leaves centroid, boxes and yaw zero (for tiles, whose records the
    stitch remakes from the whole map's points: only id, class, score and point count are read).
    """
    num = int(max(point_instance.max(initial=-1), voxel_instance.max(initial=-1))) + 1
    num_classes = voxel_probs.shape[1]
    clustered = np.flatnonzero(voxel_instance >= 0)
    owner = voxel_instance[clustered]
    votes = np.bincount(owner * num_classes + voxel_probs[clustered].argmax(1),
                        minlength=num * num_classes).reshape(num, num_classes)
    classes = votes.argmax(1)
    voxels = np.bincount(owner, minlength=num)
    prob_sum = np.bincount(owner, weights=voxel_probs[clustered, classes[owner]], minlength=num)
    scores = np.divide(prob_sum, voxels, out=np.zeros(num), where=voxels > 0)
    if half_area > 0:
        area = voxels * voxel_area
        scores *= area / (area + half_area)
    members = np.flatnonzero(point_instance >= 0)
    order = members[np.argsort(point_instance[members], kind="stable")]
    starts = np.searchsorted(point_instance[order], np.arange(num + 1))
    if not geometry:
        zero = (0.0, 0.0, 0.0)
        return [Instance(k, int(classes[k]), CLASS_NAMES[classes[k]], float(scores[k]),
                         int(starts[k + 1] - starts[k]), zero, zero, zero, zero, 0.0, zero)
                for k in range(num) if starts[k + 1] > starts[k]]
    return [instance_record(k, points[order[starts[k]:starts[k + 1]]], int(classes[k]), float(scores[k]))
            for k in range(num) if starts[k + 1] > starts[k]]


def instance_record(id: int, points: np.ndarray, class_id: int, score: float) -> Instance:
    """The record of one object from its points (M, 3): centroid, axis-aligned and oriented box."""
    lo, hi = column_bounds(points)
    centre_xy, yaw, size_xy = footprint_rectangle(points[:, :2])
    return Instance(
        id=id, class_id=class_id, class_name=CLASS_NAMES[class_id], score=score,
        point_count=len(points), centroid=_tuple([c.mean() for c in points.T]), aabb_center=_tuple((lo + hi) / 2),
        aabb_size=_tuple(hi - lo), obb_center=_tuple(np.array([*centre_xy, (lo[2] + hi[2]) / 2])),
        obb_yaw=yaw, obb_size=_tuple(np.array([*size_xy, hi[2] - lo[2]])))
