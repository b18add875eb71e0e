"""All settings in one tree of dataclasses, read from YAML with unknown keys rejected.

The CLI, training and the ROS node read the same tree: the node declares one ROS parameter
per leaf (``cluster.min_cluster_size`` ...), so there is no second set of defaults anywhere.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ssen_ros.classes import BACKGROUND_CLASSES, class_ids


MIN_TILE_SIZE = 1.0
"""Metres; a tile must hold at least one cell of the networks' coarsest level (``ssen_ros.tiling``)."""


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the key."""


Device = Literal["auto", "cpu", "cuda"]
Backend = Literal["auto", "torch", "minkowski", "spconv"]
ClusterMethod = Literal["fast", "exact"]
Reliability = Literal["auto", "reliable", "best_effort"]
Durability = Literal["auto", "transient_local", "volatile"]


def choices(tp: Any) -> tuple:
    """The values a ``Literal[...]`` annotation allows; () for any other type."""
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def setting(default: Any, *, range: "tuple[float, float] | None" = None, read_only: bool = False) -> Any:
    """A field with its schema: the closed ``range`` its value must lie in, and whether the node
    can change it at run time (``read_only``: it chooses the networks or the subscription)."""
    metadata: dict[str, Any] = {"read_only": read_only}
    if range is not None:
        metadata["range"] = range
    return field(default=default, metadata=metadata)


def check_fields(config: Any) -> None:
    """Check the choices (``Literal`` annotations) and ranges (``setting``) of the leaves of one
    config dataclass; ``ConfigError`` names the field (``from_dict`` adds the section)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        allowed = choices(hints[f.name])
        if allowed and value not in allowed:
            raise ConfigError(f"{f.name} must be one of {list(allowed)}, got {value!r}")
        if "range" not in f.metadata:
            continue
        lo, hi = f.metadata["range"]
        if not value >= lo:  # NaN fails here too
            raise ConfigError(f"{f.name} must be >= {lo}, got {value}")
        if value > hi:
            raise ConfigError(f"{f.name} must be <= {hi}, got {value}")


@dataclass
class LossConfig:
    """SSEN loss, paper eqs. 1-4 (see ``ssen_ros.loss``)."""

    gamma: float = setting(10.0, range=(0.0, 1e6))
    """gamma_intra in eq. 1: weight of the push term."""
    delta_pull: float = setting(0.1, range=(0.0, 100.0))
    """delta_inter in eq. 4: pull hinge radius around each instance mean."""
    delta_push: float = setting(0.5, range=(0.0, 100.0))
    """delta_intra in eq. 2: means are pushed until 2*delta_push apart."""
    p: float = setting(1.0, range=(0.0, 10.0))
    """Size weighting exponent of eq. 3 (n_i^p / sum_j n_j^p); p=0 weighs instances equally."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class ClusterConfig:
    """Clustering of foreground embeddings into instances (paper §III-B, HDBSCAN)."""

    method: ClusterMethod = "fast"
    """'exact': HDBSCAN on every embedding, the authors' call; 'fast': HDBSCAN on a sample, then
    every embedding joins the nearest sampled cluster (``ssen_ros.cluster``)."""
    min_cluster_size: int = setting(200, range=(2, 10_000_000))
    """Smallest instance, in voxels of the full cloud (authors: 200 at 2 cm). The segmenter
    states it at 2 cm and scales it by surface area, (0.02 / voxel_size)^2, to the voxel size
    it runs at."""
    min_samples: int = setting(0, range=(0, 10_000_000))
    """HDBSCAN min_samples, scaled like min_cluster_size; 0 means equal to min_cluster_size."""
    sample_size: int = setting(10000, range=(100, 10_000_000))
    """'fast' only: how many embeddings HDBSCAN sees (all of them when there are fewer). A sample
    shows every instance it hits a few times, so the cost stops growing with the map while the
    instances stay the same."""
    assign_radius: float = setting(0.3, range=(0.0, 100.0))
    """'fast' only: an embedding farther than this from every cluster's sampled members is noise."""
    split_distance: float = setting(0.7, range=(0.0, 100.0))
    """'fast' only: a cluster whose HDBSCAN leaf sub-clusters have embedding means farther apart than
    this is split (the loss pushes instance means 1.0 apart, eq. 2, and pulls points within 0.1
    of their mean, eq. 4); 0 never splits."""
    neighbours: int = setting(8, range=(0, 10_000))
    """'fast' only: HDBSCAN's spanning tree is taken over each sampled embedding's this many
    nearest neighbours (exact wherever the graph holds the tree's edges); 0: the ``hdbscan``
    package's exact Boruvka tree, which costs more."""
    seed: int = setting(0, range=(0, 2**31 - 1))
    """'fast' only: seed of the sample, so results repeat."""
    connect_distance: float = setting(0.1, range=(0.0, 100.0))
    """Metres: each cluster is split into its spatially connected parts, voxels in the same or
    neighbouring cubes of this edge joined (``ssen_ros.cluster``); 0 never splits."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class SegmenterConfig:
    """The whole inference pipeline: voxelise -> networks -> cluster -> instances."""

    weights: str = setting("default", read_only=True)
    """Checkpoint with both networks; 'default' is the demo weights shipped in the package."""
    voxel_size: float = setting(0.0, range=(0.0, 1.0), read_only=True)
    """Voxel edge in metres; 0 takes the voxel size the weights were trained with."""
    device: Device = setting("auto", read_only=True)
    """'auto' (CUDA when available, else CPU), 'cpu' or 'cuda'."""
    backend: Backend = setting("torch", read_only=True)
    """Sparse-conv engine: 'torch' (plain PyTorch, ours: no compiler, CPU and CUDA), 'minkowski'
    (MinkowskiEngine 0.5.4, the paper's engine), 'spconv' (spconv 2.3, a benchmark peer), or
    'auto' (MinkowskiEngine when it imports, else torch)."""
    threads: int = setting(0, range=(0, 1024), read_only=True)
    """CPU threads for the networks (0: OMP_NUM_THREADS, else every core). The torch backend
    shares each convolution's tiles out to them and sets torch's intra-op threads to 1, process-wide."""
    background_classes: list[str] = field(default_factory=lambda: list(BACKGROUND_CLASSES))
    """Classes that never become instances; the embedding network does not see them."""
    tta_rotations: int = setting(1, range=(1, 36))
    """Average the semantic logits over this many rotations about z (paper Table II uses 10)."""
    crop_min: list[float] = field(default_factory=list)
    """Lower corner [x, y, z] of a region of interest (empty: none); points outside are not segmented."""
    crop_max: list[float] = field(default_factory=list)
    """Upper corner [x, y, z] of the region of interest (empty: none)."""
    max_points: int = setting(5_000_000, range=(1, 100_000_000))
    """Larger clouds are rejected with an error rather than risking the robot's memory."""
    coordinate_limit: float = setting(10_000.0, range=(1.0, 20_000.0))  # 2**21 voxels of 2 cm per axis (voxel.py)
    """Points farther than this many metres from the frame's origin along any axis are dropped
    (counted, labelled -1): hostile or broken coordinates must not blow up the voxel or tile grid."""
    min_instance_points: int = setting(1, range=(1, 10_000_000))
    """Instances with fewer input points than this are dropped."""
    score_half_area: float = setting(0.25, range=(0.0, 1000.0))
    """Square metres of surface at which an instance's score is half its class probability:
    score = probability x A / (A + score_half_area), so fragments rank below whole objects;
    0: the class probability alone."""
    tile_size: float = setting(4.0, range=(0.0, 1000.0))
    """Large maps are segmented in square xy tiles of at most this edge in metres, to bound
    memory; smaller tiles gave better instances on multi-room maps at more tiles' cost
    (docs/training.md, "4 m tiles"). A cloud whose xy extent fits one tile plus its margins is
    segmented whole. 0 never tiles."""
    tile_overlap: float = setting(1.0, range=(0.0, 100.0))
    """Margin in metres that each tile adds on every side: context for the points near its
    edge, and the band where the pieces of an object cut by a tile border are matched."""
    max_tiles: int = setting(4000, range=(1, 1_000_000))
    """A map whose xy extent needs more tiles than this is rejected with an error, so one run
    cannot take unbounded time."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("crop_min", "crop_max"):
            corner = getattr(self, name)
            if len(corner) not in (0, 3):
                raise ConfigError(f"{name} must be empty or [x, y, z], got {corner}")
            if not all(math.isfinite(v) for v in corner):
                raise ConfigError(f"{name} must be finite, got {corner}")
        if 0 < self.tile_size < MIN_TILE_SIZE:
            raise ConfigError(
                f"tile_size must be 0 (no tiles) or at least {MIN_TILE_SIZE} m, got {self.tile_size}: a "
                "smaller tile holds less than one cell of the networks' coarsest level, and a map needs "
                "many times more tiles")
        if self.crop_min and self.crop_max and not all(lo < hi for lo, hi in zip(self.crop_min, self.crop_max)):
            raise ConfigError(f"crop_min {self.crop_min} must be below crop_max {self.crop_max} on every axis")
        try:
            class_ids(self.background_classes)
        except ValueError as exc:
            raise ConfigError(f"background_classes: {exc}") from exc


@dataclass
class LiveConfig:
    """Live maps: re-segment only the tiles of a republished map that changed (``ssen_ros.live``)."""

    enabled: bool = False
    """The node keeps each tile's last result and re-segments only the tiles whose voxels changed;
    false: every map is segmented from scratch."""
    tile_size: float = setting(4.0, range=(0.5, 1000.0))
    """Edge in metres of the square xy tiles that changes are tracked in, fixed in the map frame
    (so a tile keeps its place while the map grows), each read with ``segmenter.tile_overlap``
    of margin. Smaller tiles re-run less around a change but spend more on margins."""
    changed_voxels: int = setting(20, range=(0, 10_000_000))
    """A tile whose voxels (core and margin) differ from those of its last run in at most this
    many, added or removed, keeps its result, so a few voxels of noise force no re-run. Keep it
    below the smallest instance (``cluster.min_cluster_size`` at the voxel size), so that no
    object can appear or vanish unseen."""
    change_margin: float = setting(1.0, range=(0.0, 100.0))
    """How far in metres around its core a tile counts changes: a changed voxel further out, in
    the outer part of the tile's margin, does not make it re-run. At ``segmenter.tile_overlap``
    or more (the whole margin: the default) the result equals a full run's on the same tiles;
    less re-runs fewer tiles around a change, and a kept tile then labels nothing it has not
    seen and its border merges use its last view of that outer band."""
    full_share: float = setting(0.5, range=(0.0, 1.0))
    """When the tiles to re-run hold more than this share of all tiles' voxels, every tile is
    re-run (a full run), as after a loop closure that moved most of the map."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class NodeConfig:
    """The ROS 2 node: QoS of the map subscription and how often to re-segment."""

    reliability: Reliability = setting("auto", read_only=True)
    """QoS reliability of the map subscription: 'auto' matches the topic's publishers when the
    first one appears (as ``ros2 topic echo`` does), 'reliable' or 'best_effort'; a reliable
    subscription receives nothing from a best_effort publisher."""
    durability: Durability = setting("auto", read_only=True)
    """QoS durability: 'auto' matches the publishers; 'transient_local' also receives a latched
    map published before the node started, but nothing from a volatile publisher; 'volatile'
    receives only maps published after it subscribed."""
    depth: int = setting(1, range=(1, 1000), read_only=True)
    """QoS history depth; only the newest map matters, older ones are coalesced."""
    min_period: float = setting(0.0, range=(0.0, 3600.0))
    """Seconds between the starts of two runs; maps arriving sooner wait (only the newest is kept)."""
    oriented_boxes: bool = True
    """Markers show oriented boxes (yaw from the footprint) rather than axis-aligned ones."""
    id_match_iou: float = setting(0.3, range=(0.0, 1.0))
    """Stable ids: a new instance keeps the id of last run's instance of the same class whose
    voxels overlap it by at least this IoU."""
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    live: LiveConfig = field(default_factory=LiveConfig)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class AugmentConfig:
    """Training augmentations, paper §IV."""

    color_jitter_std: float = setting(0.03, range=(0.0, 1.0))
    scale_min: float = setting(0.8, range=(0.01, 100.0))
    scale_max: float = setting(1.2, range=(0.01, 100.0))
    rotate_z: bool = True
    """A free rotation about z."""
    tilt_std_deg: float = setting(5.0, range=(0.0, 90.0))
    """Rotation about x, Gaussian, clipped at ``tilt_max_deg``."""
    tilt_max_deg: float = setting(10.0, range=(0.0, 90.0))
    color_gamma: float = setting(1.0, range=(1.0, 10.0))
    """Not in the paper: a camera's exposure, colour^gamma with gamma log-uniform in
    [1/color_gamma, color_gamma]; 1: none."""
    color_gain: float = setting(0.0, range=(0.0, 0.99))
    """Not in the paper: white balance, a per-channel gain uniform in 1 +- color_gain; 0: none."""
    color_grey: float = setting(0.0, range=(0.0, 1.0))
    """Not in the paper: probability that a sample's colours become grey (luma in every channel)."""
    color_drop: float = setting(0.0, range=(0.0, 1.0))
    """Not in the paper: probability that a sample has no colour, as a LiDAR map (zero features)."""
    min_density: float = setting(1.0, range=(0.001, 1.0))
    """Not in the paper: a random share of the points is kept, log-uniform in [min_density, 1]."""
    point_noise: float = setting(0.0, range=(0.0, 1.0))
    """Not in the paper: Gaussian noise on every point's position, std in metres."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.scale_min > self.scale_max:
            raise ConfigError(f"scale_min {self.scale_min} must not exceed scale_max {self.scale_max}")


@dataclass
class HeadRefitConfig:
    """Classifier re-training after the last step: the semantic network's final layer is fitted
    again on the frozen network's features with rare classes weighted up (Kang et al., ICLR 2020;
    ``ssen_ros.head_refit``). Not in the paper's recipe."""

    steps: int = setting(0, range=(0, 10_000_000))
    """Full-batch Adam steps; 0 skips the re-fit."""
    alpha: float = setting(0.25, range=(0.0, 1.0))
    """Class weights are (class frequency)^-alpha: 0 keeps the data's balance, 1 weighs classes equally."""
    lr: float = setting(1e-2, range=(1e-9, 10.0))
    voxels_per_class: int = setting(1000, range=(1, 10_000_000))
    """Per training scene, at most this many voxels of each class are used (the weights correct for it)."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class TrainConfig:
    """Training of both networks (``ssen train``); defaults are the paper's recipe."""

    data: str = "data/rooms"
    """A folder of ScanNet-format scene folders with 'train' and 'val' subfolders."""
    scenes: int = setting(0, range=(0, 10_000_000))
    """Train on the first this many scenes of ``data``/train, sorted by name (0: all)."""
    out: str = "runs/ssen"
    arch: str = "Res16UNet34C"
    in_channels: int = setting(3, range=(3, 6))
    """3: RGB, as the authors' code; 4: RGB plus the height above the floor; 6: RGB plus centred
    xyz, as the paper's §IV states (``ssen_ros.features``)."""
    init: str = ""
    """Weights file both networks start from (step 0, a fresh optimizer), e.g. an earlier stage's
    ``final.pt``; input channels are matched by name (``checkpoint.load_init``). Empty: random."""
    conv1_kernel: int = 5
    voxel_size: float = setting(0.02, range=(0.001, 1.0))
    embedding_dim: int = setting(8, range=(1, 1024))
    steps: int = setting(60_000, range=(1, 100_000_000))
    batch_size: int = setting(8, range=(1, 4096))
    lr: float = setting(1e-4, range=(1e-9, 10.0))
    lr_decay: float = setting(0.8, range=(1e-6, 1.0))
    lr_decay_every: int = setting(10_000, range=(1, 100_000_000))
    lr_milestones: list[int] = field(default_factory=list)
    """Steps at which the lr is multiplied by ``lr_decay``; empty: every ``lr_decay_every`` steps."""
    grad_clip: float = setting(0.5, range=(1e-9, 1e6))
    """Largest gradient norm of each network per step (``clip_grad_norm_``)."""
    crop_size: float = setting(0.0, range=(0.0, 1000.0))
    """Train on random square crops of this edge in metres (0: whole rooms)."""
    val_every: int = setting(2000, range=(0, 100_000_000))
    """Validate every this many steps (0: never), after saving ``last.pt``."""
    checkpoint_every: int = setting(1000, range=(1, 100_000_000))
    seed: int = setting(0, range=(0, 2**31 - 1))
    num_workers: int = setting(0, range=(0, 256))
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    head_refit: HeadRefitConfig = field(default_factory=HeadRefitConfig)

    def __post_init__(self) -> None:
        check_fields(self)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(path: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if _is_dataclass_type(tp):
        return from_dict(tp, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(f"{path}[{i}]", inner, v) for i, v in enumerate(value)]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    if choices(tp) and isinstance(value, str):  # which strings: the dataclass's own check
        return value
    raise ConfigError(f"{path}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in {path}" if path else ""
        raise ConfigError(f"unknown key(s) {unknown}{where}; known keys: {sorted(names)}")
    kwargs = {k: _coerce(f"{path}.{k}" if path else k, hints[k], v) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # the section's own checks name the field; add the section
        if not path:
            raise
        raise ConfigError(f"{path}.{exc}") from None


def to_dict(config: Any) -> dict:
    """The nested dict of a config dataclass (for YAML and checkpoints)."""
    return dataclasses.asdict(config)


def load_yaml(cls: type, path: "str | Path") -> Any:
    """Read a YAML file into dataclass ``cls``; errors name the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:  # its text quotes the file over several lines
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML: {exc.problem or exc.context}{where}") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    if data is None:  # an empty file would silently mean every default
        raise ConfigError(f"{path}: the config is empty; give the keys to set")
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a config as ``{'cluster.min_cluster_size': 200, ...}`` (ROS parameter names)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out


def unflatten(flat: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten` on plain dicts."""
    nested: dict = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


def leaves(cls: type, prefix: str = "") -> dict[str, tuple[Any, dataclasses.Field]]:
    """Leaf name (as :func:`flatten`) -> its annotation and field (whose metadata holds the
    range and read-only flag): the schema that the node's parameter descriptors are built from."""
    out: dict[str, tuple[Any, dataclasses.Field]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_dataclass_type(hints[f.name]):
            out.update(leaves(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = (hints[f.name], f)
    return out


def field_docs(cls: type, prefix: str = "") -> dict[str, str]:
    """Leaf name -> the docstring written under that field (used as ROS parameter descriptions)."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    body = ast.parse(inspect.getsource(cls)).body[0].body
    for stmt, nxt in zip(body, body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[prefix + stmt.target.id] = " ".join(nxt.value.value.split())
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_dataclass_type(hints[f.name]):
            docs.update(field_docs(hints[f.name], f"{prefix}{f.name}."))
    return docs
