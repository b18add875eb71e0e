"""The SSEN pipeline (paper §III, Fig. 2): one call from a point cloud to instances.

Stages, each timed: crop -> voxelize -> semantic network (optionally averaged over rotations
about z, paper Table II) -> drop background classes -> embedding network on the foreground
voxels -> cluster (HDBSCAN, §III-B) -> instance records -> labels spread back to every point.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Iterator, Optional

import numpy as np
import torch

from ssen_ros import checkpoint
from ssen_ros.classes import class_ids
from ssen_ros.cluster import EmbeddingClusterer
from ssen_ros.config import ClusterConfig, ConfigError, Device, SegmenterConfig, choices
from ssen_ros.features import colors_to_features, with_coordinates
from ssen_ros.instances import make_instances
from ssen_ros.rotations import rotation_z
from ssen_ros.segmentation import Segmentation, label_points_by_instance
from ssen_ros.sparse import SparseTensor, use_cpu_threads
from ssen_ros.tiling import TileBudgetError, segment_tiled, tile_grid
from ssen_ros.voxel import column_bounds, voxelize

log = logging.getLogger("ssen_ros")

REFERENCE_VOXEL = 0.02
"""The paper's voxel size (§IV); cluster sizes in the config are counted in these voxels."""


class SegmenterError(ValueError):
    """The input cannot be segmented; the message says why."""


def pick_device(requested: str) -> torch.device:
    """'auto' -> CUDA if available else CPU; 'cuda' without CUDA falls back to CPU, logged."""
    if requested not in choices(Device):
        raise SegmenterError(f"device must be one of {list(choices(Device))}, got {requested!r}")
    if requested != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        log.warning("device 'cuda' requested but CUDA is not available: running on the CPU")
    return torch.device("cpu")


def scale_cluster_sizes(config: ClusterConfig, voxel_size: float) -> ClusterConfig:
    """Cluster sizes are stated in 2 cm voxels; surfaces hold (0.02 / voxel_size)^2 as many."""
    factor = (REFERENCE_VOXEL / voxel_size) ** 2
    return replace(config, min_cluster_size=max(2, round(config.min_cluster_size * factor)),
                   min_samples=max(1, round((config.min_samples or config.min_cluster_size) * factor)))


class Segmenter:
    """``Segmenter(config)(points, colors) -> Segmentation``; networks are loaded once."""

    def __init__(self, config: SegmenterConfig = SegmenterConfig()):
        self.config = config
        self.device = pick_device(config.device)
        path = checkpoint.resolve(config.weights)
        self.spec, self.semantic_net, self.embedding_net, self.meta = checkpoint.load(
            path, backend=config.backend, device=self.device)
        if self.device.type == "cpu":
            use_cpu_threads(config.threads, self.semantic_net.backend)
        self.voxel_size = config.voxel_size or self.spec.voxel_size
        self.reconfigure(config)
        log.info("SSEN weights %s (%s, trained at %.3f m voxels), running at %.3f m on %s",
                 path, self.spec.arch, self.spec.voxel_size, self.voxel_size, self.device)

    def reconfigure(self, config: SegmenterConfig) -> None:
        """Apply ``config`` from the next call on. The settings that choose the networks (read-only
        in the schema: weights, device, backend, voxel size, threads) are loaded once, so changing
        them raises ``ConfigError`` naming them: they need a new Segmenter."""
        reload = [f.name for f in fields(config) if f.metadata.get("read_only")
                  and getattr(config, f.name) != getattr(self.config, f.name)]
        if reload:
            raise ConfigError(f"{', '.join(reload)} cannot change in a running Segmenter: "
                              "the networks are loaded once; make a new Segmenter")
        self.config = config
        self.background = class_ids(config.background_classes)
        self.clusterer = EmbeddingClusterer(scale_cluster_sizes(config.cluster, self.voxel_size))

    def __call__(self, points: np.ndarray, colors: Optional[np.ndarray] = None, *,
                 progress: bool = False) -> Segmentation:
        """Segment one cloud; a map wider than ``config.tile_size`` is segmented tile by tile
        (``ssen_ros.tiling``). ``progress`` shows a bar over stages or tiles on stderr."""
        t_start = time.perf_counter()
        points = np.asarray(points)
        rows = self.checked_rows(points)
        try:
            grid = tile_grid(points[rows, :2], self.config.tile_size, self.config.tile_overlap,
                             self.config.max_tiles)
        except TileBudgetError as exc:
            raise SegmenterError(str(exc)) from None
        if grid is None:
            result = self._segment(points, colors, progress, rows)
        else:
            result = segment_tiled(self.segment_tile, points, colors, grid, self.background,
                                   self.config.min_instance_points, progress)
        label_points_by_instance(result.semantic, result.instance, result.instances)
        result.num_beyond_limit = self._beyond_limit(points, rows)
        result.timings["total"] = time.perf_counter() - t_start
        return result

    def checked_rows(self, points: np.ndarray) -> "np.ndarray | slice":
        """The rows of ``points`` to segment (:meth:`_rows`), after checking the cloud's shape
        and size (``SegmenterError``)."""
        if points.ndim != 2 or points.shape[1] != 3:
            raise SegmenterError(f"points must be (N, 3), got shape {points.shape}")
        n = len(points)
        if n > self.config.max_points:
            raise SegmenterError(f"{n} points exceed max_points={self.config.max_points}")
        return self._rows(points)

    def segment_tile(self, points: np.ndarray, colors: Optional[np.ndarray] = None) -> Segmentation:
        """One tile through every stage, its instance records without geometry (the tiling
        remakes them from the whole map's points)."""
        return self._segment(points, colors, geometry=False)

    def _segment(self, points: np.ndarray, colors: Optional[np.ndarray] = None,
                 progress: bool = False, rows: "np.ndarray | slice | None" = None,
                 geometry: bool = True) -> Segmentation:
        """One cloud (or tile) through every stage; ``rows`` is :meth:`_rows` of the points when
        the caller has it; ``geometry=False``: records without boxes (``make_instances``)."""
        from tqdm import tqdm

        timings: dict[str, float] = {}
        bar = tqdm(total=6, desc="segment", unit="stage", disable=not progress, leave=False)

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            bar.set_postfix_str(name)
            t0 = time.perf_counter()
            yield
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            timings[name] = time.perf_counter() - t0
            bar.update()

        n = len(points)
        semantic = np.full(n, -1, dtype=np.int64)
        instance = np.full(n, -1, dtype=np.int64)
        t_start = time.perf_counter()
        with stage("crop"):
            if rows is None:
                rows = self._rows(points)
            pts = points[rows]
            colors = None if colors is None else np.asarray(colors)[rows]
            feats = with_coordinates(colors_to_features(colors, len(pts)), pts, self.spec.in_channels)
        if len(pts) == 0:
            bar.close()
            timings["total"] = time.perf_counter() - t_start
            return Segmentation(semantic, instance, [], timings)
        with stage("voxelize"):
            vox = voxelize(pts, feats, self.voxel_size)
            coords = torch.from_numpy(vox.coords)
            features = torch.from_numpy(np.ascontiguousarray(vox.features, dtype=np.float32))
        with torch.inference_mode():
            with stage("semantic"):
                centers = vox.centers()
                probs = self._semantic_probs(centers, coords, features)
            with stage("embedding"):
                fg = ~np.isin(probs.argmax(1), self.background)
                emb = self._run(self.embedding_net, coords[fg], features[fg]) if fg.any() else np.zeros((0, 1))
        with stage("cluster"):
            voxel_instance = np.full(len(vox), -1, dtype=np.int64)
            voxel_instance[fg] = self.clusterer.fit_predict(emb, centers[fg])
        with stage("instances"):
            point_instance = voxel_instance[vox.inverse]
            records = make_instances(pts, point_instance, voxel_instance, probs, self.voxel_size ** 2,
                                     self.config.score_half_area, geometry)
            small = [r.id for r in records if r.point_count < self.config.min_instance_points]
            point_instance[np.isin(point_instance, small)] = -1
            records = [r for r in records if r.id not in small]
            semantic[rows] = probs.argmax(1)[vox.inverse]
            instance[rows] = point_instance
        bar.close()
        timings["total"] = time.perf_counter() - t_start
        return Segmentation(semantic, instance, records, timings, len(vox), int(fg.sum()))

    def _rows(self, points: np.ndarray) -> "np.ndarray | slice":
        """Mask of the finite points within ``coordinate_limit`` and inside the crop box;
        ``slice(None)`` when that is every point (indexing with it takes a view, no copy).

        Column by column: numpy's reductions along the short axis of an (N, 3) array
        (``.all(1)``, ``.min(0)``) are several times slower than per-column passes. NaN fails
        every comparison, so the limit also drops non-finite points."""
        limit = self.config.coordinate_limit
        lo, hi = column_bounds(points) if len(points) else (np.zeros(3), np.zeros(3))
        within = bool(np.all(lo >= -limit) and np.all(hi <= limit))  # False with any NaN
        keep = None if within else np.logical_and.reduce(
            [np.abs(points[:, j]) <= limit for j in range(3)])
        for bound, inside in ((self.config.crop_min, np.greater_equal), (self.config.crop_max, np.less_equal)):
            if bound:
                for j in range(3):
                    column = inside(points[:, j], bound[j])
                    keep = column if keep is None else keep & column
        return slice(None) if keep is None or keep.all() else keep

    def _beyond_limit(self, points: np.ndarray, rows: "np.ndarray | slice") -> int:
        """How many finite points ``_rows`` dropped for lying beyond ``coordinate_limit``."""
        if isinstance(rows, slice):
            return 0
        limit = self.config.coordinate_limit
        finite = np.logical_and.reduce([np.isfinite(points[:, j]) for j in range(3)])
        within = np.logical_and.reduce([np.abs(points[:, j]) <= limit for j in range(3)])
        return int(np.count_nonzero(finite & ~within))

    def _run(self, net: torch.nn.Module, coords: torch.Tensor, features: torch.Tensor) -> np.ndarray:
        batch = torch.zeros(len(coords), 1, dtype=torch.int32)
        x = SparseTensor(features.to(self.device), torch.cat([batch, coords], 1).to(self.device))
        return net(x).features.float().cpu().numpy()

    def _semantic_probs(self, centers: np.ndarray, coords: torch.Tensor, features: torch.Tensor) -> np.ndarray:
        """Softmax of the semantic logits, averaged over ``tta_rotations`` turns about z (Table II)."""
        logits = self._run(self.semantic_net, coords, features)
        turns = max(1, self.config.tta_rotations)
        middle = centers.mean(0)
        for k in range(1, turns):
            turned = (centers - middle) @ rotation_z(2 * np.pi * k / turns).T
            rotated = voxelize(turned, with_coordinates(features.numpy()[:, :3], turned, self.spec.in_channels),
                               self.voxel_size)
            out = self._run(self.semantic_net, torch.from_numpy(rotated.coords),
                            torch.from_numpy(np.ascontiguousarray(rotated.features, dtype=np.float32)))
            logits += out[rotated.inverse]
        logits /= turns
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(1, keepdims=True)
        return probs
