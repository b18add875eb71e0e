"""The ROS 2 node ``ssen_node``: accumulated maps in, instances out (a thin layer over Segmenter).

Subscribes to ``map_cloud`` (sensor_msgs/PointCloud2, remappable; QoS from parameters) and
publishes, in the map's frame and with its stamp:

- ``~/labeled_cloud`` (PointCloud2: x y z rgb label instance score, see ``ros.convert``),
- ``~/markers`` (MarkerArray: DELETEALL, then a box and a "class score" label per instance),
- ``~/instances`` (ssen_ros/InstanceArray, with the processing time).

The subscription callback only hands the still-serialised message to a worker thread (the
subscription is raw, so maps that are coalesced are never even deserialised). The worker
processes the newest map; maps arriving meanwhile replace each other, so no queue grows. An
optional ``min_period`` spaces out runs. Instance ids are kept stable across runs
(``ros.tracking``). With ``live.enabled`` only the tiles of the map that changed are segmented
again (``ssen_ros.live``); the outputs still cover the whole map.

Parameters are the leaves of ``ssen_ros.config.NodeConfig`` (``segmenter.cluster.min_samples``
...), each declared with its field's docstring as description and a range where one makes
sense; ``config/ssen.yaml`` lists them all. Unknown names in a params file are logged as a
warning. Settings that only change what the next run does (clustering, background classes, crop
box, TTA, tiles, min_period, oriented boxes ...) can be set at run time; invalid values are
rejected with the reason, and the last good map is segmented again with the new values.
Settings that need a restart (weights, device, backend, voxel size, QoS) are read-only.

Bad maps (empty, all non-finite, malformed, too large, too wide for the tile budget) give one
error line each, naming the map's frame and stamp, and the node carries on. A map with no
objects (or a crop box holding no point) still publishes: DELETEALL, an empty InstanceArray and
the labelled cloud with every instance -1, so no stale objects remain. A missing or mismatching weights file stops the start-up with a message naming it and
exit code 1. SIGINT/SIGTERM exit with code 0 without waiting for a segmentation in progress.
"""
from __future__ import annotations

import array
import dataclasses
import os
import signal
import sys
import threading
import time
import typing
from typing import Any, Callable, Generic, NoReturn, Optional, TypeVar

import numpy as np
import rclpy
import rclpy.logging
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ssen_ros.checkpoint import WeightsError
from ssen_ros.classes import class_ids
from ssen_ros.cluster import EmbeddingClusterer
from ssen_ros.config import ConfigError, NodeConfig, field_docs, flatten, from_dict, unflatten
from ssen_ros.instances import Instance
from ssen_ros.io import CloudFormatError
from ssen_ros.features import NO_COLOUR
from ssen_ros.io.pointcloud2 import cloud_from_pointcloud2
from ssen_ros.live import LiveSegmenter
from ssen_ros.msg import InstanceArray
from ssen_ros.ros.convert import instance_array, labeled_cloud, qos_profile
from ssen_ros.ros.log_bridge import forward_core_logs, forward_warnings
from ssen_ros.ros.map_subscription import MapSubscription
from ssen_ros.ros.markers import instance_markers
from ssen_ros.ros.tracking import IdTracker, relabel
from ssen_ros.segmenter import Segmenter, SegmenterError, scale_cluster_sizes

NODE_NAME = "ssen_node"
INPUT_TOPIC = "map_cloud"

INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "depth": (1, 1000),
    "segmenter.threads": (0, 1024),
    "segmenter.tta_rotations": (1, 36),
    "segmenter.max_points": (1, 100_000_000),
    "segmenter.min_instance_points": (1, 10_000_000),
    "segmenter.cluster.min_cluster_size": (2, 10_000_000),
    "segmenter.cluster.min_samples": (0, 10_000_000),
    "segmenter.cluster.sample_size": (100, 10_000_000),
    "segmenter.cluster.neighbours": (0, 10_000),
    "segmenter.cluster.seed": (0, 2**31 - 1),
    "segmenter.max_tiles": (1, 1_000_000),
    "live.changed_voxels": (0, 10_000_000),
}
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "min_period": (0.0, 3600.0),
    "id_match_iou": (0.0, 1.0),
    "segmenter.voxel_size": (0.0, 1.0),
    "segmenter.tile_size": (0.0, 1000.0),
    "segmenter.tile_overlap": (0.0, 100.0),
    "segmenter.coordinate_limit": (1.0, 20_000.0),  # 2**21 voxels of 2 cm per axis (voxel.py)
    "segmenter.score_half_area": (0.0, 1000.0),
    "segmenter.cluster.assign_radius": (0.0, 100.0),
    "segmenter.cluster.split_distance": (0.0, 100.0),
    "live.tile_size": (0.5, 1000.0),
    "live.full_share": (0.0, 1.0),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "reliability": ("auto", "reliable", "best_effort"),
    "durability": ("auto", "transient_local", "volatile"),
    "segmenter.device": ("auto", "cpu", "cuda"),
    "segmenter.backend": ("auto", "torch", "minkowski"),
    "segmenter.cluster.method": ("fast", "exact"),
}
READ_ONLY = frozenset({"reliability", "durability", "depth", "segmenter.weights",
                       "segmenter.device", "segmenter.backend", "segmenter.threads", "segmenter.voxel_size"})
"""Parameters fixed at start-up: they choose the networks or the subscription."""

_PARAMETER_TYPES = {str: Parameter.Type.STRING, bool: Parameter.Type.BOOL,
                    int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
                    list[str]: Parameter.Type.STRING_ARRAY, list[float]: Parameter.Type.DOUBLE_ARRAY}


class MapRejected(ValueError):
    """A map the node does not segment; the message says why."""


class MapError(Exception):
    """A map that gave no outputs: ``where`` names it, ``rejected`` tells bad input from a
    failure of ours, the message is the cause's."""

    def __init__(self, where: str, cause: BaseException, rejected: bool):
        super().__init__(str(cause))
        self.where, self.cause, self.rejected = where, cause, rejected


MAX_FRAME_ID_CHARS = 64
MAX_REASON_CHARS = 400


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was; log lines stay one line."""
    text = text.replace("\n", " ")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def map_name(header: Header) -> str:
    """'frame ..., stamp sec.nanosec' for log lines; a long frame id is shortened."""
    stamp = header.stamp
    return f"frame {shorten(repr(header.frame_id), MAX_FRAME_ID_CHARS)}, stamp {stamp.sec}.{stamp.nanosec:09d}"


def parameter_types(cls: type = NodeConfig, prefix: str = "") -> dict[str, Parameter.Type]:
    """ROS parameter type of each leaf of a config dataclass, from its annotation."""
    out: dict[str, Parameter.Type] = {}
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(parameter_types(tp, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = _PARAMETER_TYPES[tp]
    return out


def descriptor(name: str, description: str) -> ParameterDescriptor:
    """The descriptor of parameter ``name``: description, range, choices, read-only."""
    d = ParameterDescriptor(description=description, read_only=name in READ_ONLY)
    if name in INTEGER_RANGES:
        d.integer_range = [IntegerRange(from_value=INTEGER_RANGES[name][0],
                                        to_value=INTEGER_RANGES[name][1], step=1)]
    if name in FLOAT_RANGES:
        d.floating_point_range = [FloatingPointRange(from_value=FLOAT_RANGES[name][0],
                                                     to_value=FLOAT_RANGES[name][1], step=0.0)]
    if name in CHOICES:
        d.additional_constraints = "one of: " + ", ".join(CHOICES[name])
    if d.read_only:
        d.additional_constraints = (d.additional_constraints + "; " if d.additional_constraints
                                    else "") + "read-only: restart the node to change it"
    return d


def validate(config: NodeConfig) -> list[int]:
    """Check what parameter types and ranges cannot express; returns the background class ids.
    Raises ``ConfigError`` with the reason."""
    flat = flatten(config)
    for name, choices in CHOICES.items():
        if flat[name] not in choices:
            raise ConfigError(f"{name} must be one of {list(choices)}, got {flat[name]!r}")
    # Crop corners, background classes, cluster settings and the tile size are checked by the
    # config itself (``SegmenterConfig.__post_init__``), for the library and the CLI alike.
    background = class_ids(config.segmenter.background_classes)
    return background


T = TypeVar("T")


class LatestOnlyWorker(Generic[T]):
    """Runs ``process(item)`` on a daemon thread for the newest item submitted.

    ``submit`` never blocks: an item not yet started is replaced by a newer one (counted in
    ``coalesced``). Runs start at least ``min_period`` seconds apart; an item that arrives
    sooner waits, and is replaced if a newer one comes meanwhile. ``stop`` does not wait for a
    run in progress (the thread is a daemon, so it cannot hold up the process's exit).
    """

    def __init__(self, process: Callable[[T], None], min_period: float = 0.0,
                 on_error: Optional[Callable[[BaseException], None]] = None):
        self.process = process
        self.min_period = min_period
        self.on_error = on_error
        self.submitted = self.coalesced = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._item: Optional[T] = None
        self._last: Optional[T] = None
        self._last_start = -float("inf")
        self._thread = threading.Thread(target=self._loop, name="ssen_worker", daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        with self._lock:
            self.submitted += 1
            if self._item is not None:
                self.coalesced += 1
            self._item = item
            self._wake.set()

    def repeat_last(self, renew: Callable[[T], T] = lambda item: item) -> None:
        """Process ``renew(last item processed without error)`` again, unless a newer one waits."""
        with self._lock:
            if self._item is None and self._last is not None:
                self._item = renew(self._last)
                self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, timeout: float = 0.2) -> None:
        """Ask the thread to end and wait up to ``timeout`` s for a run in progress."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _take(self) -> Optional[T]:
        with self._lock:
            item, self._item = self._item, None
            self._wake.clear()
            return item

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            item = self._take()
            if item is None:
                continue
            delay = self._last_start + self.min_period - time.monotonic()
            if delay > 0:
                if self._stopping.wait(delay):
                    return
                newer = self._take()
                if newer is not None:
                    self.coalesced += 1
                    item = newer
            self._last_start = time.monotonic()
            try:
                self.process(item)
            except BaseException as exc:  # the worker must outlive any one map
                if self.on_error is not None and not self._stopping.is_set():
                    self.on_error(exc)
            else:
                self._last = item


@dataclasses.dataclass
class _Map:
    """A received map, still serialised, with the monotonic time it arrived."""

    raw: bytes
    received: float


@dataclasses.dataclass
class Outputs:
    """What one map gives, ready to publish (the InstanceArray is made when its time is known)."""

    header: Header
    where: str
    """The map's frame and stamp, for log lines."""
    num_points: int
    instances: list[Instance]
    cloud: PointCloud2
    markers: MarkerArray
    timings: dict[str, float]
    """Seconds per stage, the segmenter's included, in order."""
    segmenter_seconds: float
    notes: list[str] = dataclasses.field(default_factory=list)
    """What the log line must say about the input (no colour, points dropped)."""


class MapProcessor:
    """Serialised PointCloud2 -> labelled cloud, markers and instances with stable ids.

    Everything the node does to a map except publishing, so the benchmark times the node's own
    code. Raises ``MapRejected``, ``CloudFormatError`` or ``SegmenterError`` for bad maps.
    """

    def __init__(self, config: NodeConfig):
        validate(config)
        self.config = config
        self.segmenter = Segmenter(config.segmenter)
        self.live = LiveSegmenter(self.segmenter, config.live)
        self.tracker = IdTracker(min_iou=config.id_match_iou)

    def reconfigure(self, config: NodeConfig) -> None:
        """Apply run-time settings; networks and voxel size stay (their parameters are read-only)."""
        background = validate(config)
        self.config = config
        seg = self.segmenter
        seg.config, seg.background = config.segmenter, background
        seg.clusterer = EmbeddingClusterer(scale_cluster_sizes(config.segmenter.cluster, seg.voxel_size))
        self.tracker.min_iou = config.id_match_iou
        self.live.config = config.live
        self.live.reset()  # kept tiles were segmented with the old settings

    def __call__(self, raw: bytes) -> Outputs:
        """Raises ``MapError`` naming the map's frame and stamp for any map that gives no outputs."""
        msg = deserialize_message(raw, PointCloud2)
        where = map_name(msg.header)
        try:
            with np.errstate(all="ignore"):  # edge cases are handled, not printed
                return self._outputs(msg, where)
        except (MapRejected, CloudFormatError, SegmenterError) as exc:
            raise MapError(where, exc, rejected=True) from exc
        except Exception as exc:  # a bug of ours: still one line, naming the map
            raise MapError(where, exc, rejected=False) from exc

    def _outputs(self, msg: PointCloud2, where: str) -> Outputs:
        timings: dict[str, float] = {}
        t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timings[name] = now - t
            t = now

        n = int(msg.height) * int(msg.width)
        max_points = self.config.segmenter.max_points
        if n > max_points:
            raise MapRejected(f"{n} points exceed segmenter.max_points={max_points}")
        lap("deserialize")
        cloud = cloud_from_pointcloud2(msg)
        if len(cloud) == 0:
            raise MapRejected("no points" if n == 0 else f"all {n} points have non-finite x, y or z")
        lap("decode")
        seg = (self.live if self.config.live.enabled else self.segmenter)(cloud.points, cloud.colors)
        timings.update((k, v) for k, v in seg.timings.items() if k != "total")
        t = time.perf_counter()
        ids = self.tracker.update(cloud.points, seg.instance, seg.instances)
        point_ids, instances = relabel(seg.instance, seg.instances, ids)
        lap("ids")
        cloud_msg = labeled_cloud(cloud.points, seg.semantic, point_ids, instances, msg.header)
        lap("encode")
        markers = instance_markers(instances, msg.header, self.config.oriented_boxes)
        lap("markers")
        notes = [] if cloud.colors is not None else [NO_COLOUR]
        if seg.num_beyond_limit:
            notes.append(f"{seg.num_beyond_limit} points beyond segmenter.coordinate_limit="
                         f"{self.config.segmenter.coordinate_limit} m dropped")
        return Outputs(msg.header, where, len(cloud), instances, cloud_msg, markers, timings,
                       seg.timings["total"], notes)


def _plain(value: Any) -> Any:
    """Parameter values as config values (rclpy gives arrays as array.array)."""
    return list(value) if isinstance(value, (array.array, tuple)) else value


class SsenNode(Node):
    """The node; construction loads the networks and raises ``WeightsError``/``ConfigError``."""

    def __init__(self, **kwargs: Any):
        super().__init__(NODE_NAME, **kwargs)
        forward_core_logs(self.get_logger())
        forward_warnings(self.get_logger())
        config = self._declare_parameters()
        self.processor = MapProcessor(config)
        self._pending: Optional[NodeConfig] = None
        self._config_lock = threading.Lock()

        latched = qos_profile("reliable", "transient_local", 1)  # late RViz windows get the last
        self.cloud_pub = self.create_publisher(PointCloud2, "~/labeled_cloud", latched)
        self.marker_pub = self.create_publisher(MarkerArray, "~/markers", latched)
        self.instance_pub = self.create_publisher(InstanceArray, "~/instances", latched)
        self.worker: LatestOnlyWorker[_Map] = LatestOnlyWorker(
            self._process, config.min_period, on_error=self._log_failure)
        c, seg = config, self.processor.segmenter
        self.subscription = MapSubscription(self, INPUT_TOPIC, self._on_map, c.reliability,
                                            c.durability, c.depth)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.get_logger().info(
            f"ready: segmenting maps from {self.subscription.topic_name} "
            f"({self.subscription.describe()}) with {seg.spec.arch} at {seg.voxel_size:.3f} m "
            f"voxels on {seg.device}; publishing "
            f"{self.cloud_pub.topic_name}, {self.marker_pub.topic_name}, {self.instance_pub.topic_name}")

    # parameters ----------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeConfig:
        docs = field_docs(NodeConfig)
        types = parameter_types()
        defaults = flatten(NodeConfig())
        unset = []
        for name, ptype in types.items():
            desc = descriptor(name, docs[name])
            if Parameter.Type.from_parameter_value(defaults[name]) == ptype:
                self.declare_parameter(name, defaults[name], desc)
            else:  # an empty list has no type of its own: declare by type, set the value below
                self.declare_parameter(name, ptype, desc)
            if self.get_parameter_or(name).type_ == Parameter.Type.NOT_SET:
                # A params file's `[]` reaches rclpy as "no value"; for a list it means empty.
                given = name in self._parameter_overrides
                if given and ptype not in (Parameter.Type.STRING_ARRAY, Parameter.Type.DOUBLE_ARRAY):
                    raise ConfigError(f"parameter {name} has no value in the params file")
                unset.append(Parameter(name, ptype, [] if given else defaults[name]))
        for result in self.set_parameters(unset):
            if not result.successful:
                raise ConfigError(result.reason)
        unknown = sorted(set(self._parameter_overrides) - set(self._parameters))  # no public API
        if unknown:  # a warning, not an error: a shared params file may hold '/**' entries
            self.get_logger().warning(f"ignoring unknown parameter(s) {unknown}; "
                                      f"known: {sorted(types)}")
        return self._read_config({})

    def _read_config(self, changes: dict[str, Any]) -> NodeConfig:
        flat = {n: _plain(self.get_parameter(n).value) for n in parameter_types()}
        flat.update(changes)
        return from_dict(NodeConfig, unflatten(flat))

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Accept a change only if the whole configuration it gives is valid."""
        try:
            validate(self._read_config({p.name: _plain(p.value) for p in params}))
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Accepted changes apply from the next run, which starts now (the post-set callback,
        so a change another callback vetoed is never applied)."""
        config = self._read_config({})
        with self._config_lock:
            self._pending = config
        self.worker.min_period = config.min_period
        self.get_logger().info("parameters changed: " + ", ".join(
            f"{p.name}={_plain(p.value)!r}" for p in params))
        self.worker.repeat_last(lambda m: _Map(m.raw, time.monotonic()))  # timed from now

    # maps ----------------------------------------------------------------------------------
    def _on_map(self, raw: bytes) -> None:
        self.worker.submit(_Map(raw, time.monotonic()))

    def _log_failure(self, exc: BaseException) -> None:
        """One line per map that gave no outputs, naming it (frame, stamp) and the cause."""
        if isinstance(exc, MapError):
            what = ("rejected map " if exc.rejected else
                    f"failed on map ({type(exc.cause).__name__}) ") + exc.where
        else:  # not even deserialised, or publishing failed
            what = f"failed on map ({type(exc).__name__})"
        self.get_logger().error(
            f"{what} on {self.subscription.topic_name}: {shorten(str(exc), MAX_REASON_CHARS)}")

    def _process(self, item: _Map) -> None:
        with self._config_lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            self.processor.reconfigure(pending)
        out = self.processor(item.raw)
        if self.worker.stopping:
            return
        t = time.perf_counter()
        self.cloud_pub.publish(out.cloud)
        self.marker_pub.publish(out.markers)
        elapsed = time.monotonic() - item.received
        self.instance_pub.publish(instance_array(out.instances, out.header, elapsed))
        out.timings["publish"] = time.perf_counter() - t
        self.get_logger().info(
            f"map {out.where}: {out.num_points} points -> {len(out.instances)} instances in "
            f"{elapsed:.3f} s (segmenter {out.segmenter_seconds:.3f} s; "
            + ", ".join(f"{k} {v:.3f}" for k, v in out.timings.items())
            + f"; {self.worker.coalesced} maps coalesced so far)"
            + "".join(f"; {note}" for note in out.notes))


def main(args: Optional[list[str]] = None, stop: Optional[threading.Event] = None) -> NoReturn:
    """``ssen_node``: run the node until SIGINT/SIGTERM, then end the process: 0, or 1 if it
    cannot start. ``stop`` is the event the signals set when the caller installed the handlers
    already (``ssen_ros.ros.entry``, which catches them during the imports too); a signal that
    that came before the node is built skips it; one while it is built ends the process with 0
    once it is.

    The signals set an event that the spin loop checks every 0.1 s. rclpy's own handlers are
    off: they shut the context down from the signal, and about one time in ten here the
    executor's wait then never returned (the process hung until killed). The process ends with
    ``os._exit`` once the node, its DDS participant and the logs are closed: Python's own
    finalisation (mostly torch's) takes another 0.6-2.5 s on a busy 2-core machine, which would
    break the promise to exit within 2 s, and a segmentation in progress on the worker thread is
    abandoned rather than waited for.
    """
    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    logger = rclpy.logging.get_logger(NODE_NAME)
    code = 0
    try:
        node = None if stop.is_set() else SsenNode()
    except (WeightsError, ConfigError, SegmenterError, InvalidParameterValueException,
            InvalidParameterTypeException) as exc:
        logger.fatal(f"cannot start: {exc}")
        code, node = 1, None
    if node is not None:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:  # the context was shut down from elsewhere
            pass
        finally:
            node.worker.stop()
            executor.shutdown(timeout_sec=0.5)
            node.destroy_node()
    rclpy.try_shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # `python -m ssen_ros.ros.entry` also catches signals during the imports
    main()
