"""The ROS 2 node ``ssen_node``: accumulated maps in, instances out (a thin layer over Segmenter).

Subscribes to ``map_cloud`` (sensor_msgs/PointCloud2, remappable; QoS from parameters) and
publishes, in the map's frame and with its stamp:

- ``~/labeled_cloud`` (PointCloud2: x y z rgb label instance score, see ``ros.convert``),
- ``~/markers`` (MarkerArray: DELETEALL, then a box and a "class score" label per instance),
- ``~/instances`` (ssen_ros/InstanceArray, with the processing time).

The subscription callback only hands the still-serialised message to a worker thread
(``ssen_ros.worker``, running ``ros.processing``; the subscription is raw, so maps that are
coalesced are never even deserialised). The worker
processes the newest map; maps arriving meanwhile replace each other, so no queue grows. An
optional ``min_period`` spaces out runs. Instance ids are kept stable across runs
(``ros.tracking``). With ``live.enabled`` only the tiles of the map that changed are segmented
again (``ssen_ros.live``); the outputs still cover the whole map.

Parameters are the leaves of ``ssen_ros.config.NodeConfig`` (``segmenter.cluster.min_samples``
...), each declared with its field's docstring as description and the choices, range and
read-only flag of the config's schema (``ros.parameters``); ``config/ssen.yaml`` lists them
all. Unknown names in a params file are logged as a warning. Settings that only change what the next run does (clustering, background classes, crop
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

import dataclasses
import os
import sys
import threading
import time
from typing import Any, NoReturn, Optional

import rclpy
import rclpy.logging
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from ssen_ros.checkpoint import WeightsError
from ssen_ros.config import ConfigError, NodeConfig, field_docs, flatten, from_dict, unflatten
from ssen_ros.msg import InstanceArray
from ssen_ros.ros.convert import instance_array, qos_profile
from ssen_ros.ros.log_bridge import forward_core_logs, forward_warnings
from ssen_ros.ros.map_subscription import MapSubscription
from ssen_ros.ros.parameters import descriptor, parameter_types, plain
from ssen_ros.ros.processing import MAX_REASON_CHARS, MapError, MapProcessor, Outputs, shorten
from ssen_ros.segmenter import SegmenterError
from ssen_ros.sparse import BackendError
from ssen_ros.worker import LatestOnlyWorker

NODE_NAME = "ssen_node"
INPUT_TOPIC = "map_cloud"


@dataclasses.dataclass
class _Map:
    """A received map, still serialised, with the monotonic time it arrived."""

    raw: bytes
    received: float


class OutputPublishers:
    """The node's three outputs on ``node``, latched (late RViz windows get the last); apart
    from the node so the benchmark publishes as the node does."""

    def __init__(self, node: Node):
        latched = qos_profile("reliable", "transient_local", 1)
        self.cloud = node.create_publisher(PointCloud2, "~/labeled_cloud", latched)
        self.markers = node.create_publisher(MarkerArray, "~/markers", latched)
        self.instances = node.create_publisher(InstanceArray, "~/instances", latched)

    def topics(self) -> str:
        return ", ".join(p.topic_name for p in (self.cloud, self.markers, self.instances))

    def publish(self, out: Outputs, received: float) -> float:
        """Publish one map's outputs; returns the seconds since ``received`` (monotonic), which
        the InstanceArray, published last, carries as its processing time."""
        self.cloud.publish(out.cloud)  # bytes, serialised already: rclpy sends them as they are
        self.markers.publish(out.markers)
        elapsed = time.monotonic() - received
        self.instances.publish(instance_array(out.instances, out.header, elapsed))
        return elapsed


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

        self.outputs = OutputPublishers(self)
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
            f"voxels on {seg.device}; publishing {self.outputs.topics()}")

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
        flat = {n: plain(self.get_parameter(n).value) for n in parameter_types()}
        flat.update(changes)
        return from_dict(NodeConfig, unflatten(flat))

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Accept a change only if the whole configuration it gives is valid (the config checks itself)."""
        try:
            self._read_config({p.name: plain(p.value) for p in params})
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
            f"{p.name}={plain(p.value)!r}" for p in params))
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
        elapsed = self.outputs.publish(out, item.received)
        out.timings["publish"] = time.perf_counter() - t
        self.get_logger().info(
            f"map {out.where}: {out.num_points} points -> {len(out.instances)} instances in "
            f"{elapsed:.3f} s (segmenter {out.segmenter_seconds:.3f} s; "
            + ", ".join(f"{k} {v:.3f}" for k, v in out.timings.items())
            + f"; {self.worker.coalesced} maps coalesced so far)"
            + "".join(f"; {note}" for note in out.notes))


def main(args: Optional[list[str]], stop: threading.Event) -> NoReturn:
    """``ssen_node``: run the node until ``stop`` is set, then end the process: 0, or 1 if it
    cannot start. ``ssen_ros.ros.entry`` calls it with the event SIGINT and SIGTERM set
    (``ssen_ros.ros.stop_signals`` says why rclpy's own handlers are off); a signal that came
    before the node is built skips it; one while it is built ends the process with 0 once it is.

    The spin loop checks the event every 0.1 s. The process ends with ``os._exit`` once the
    node, its DDS participant and the logs are closed: Python's own finalisation (mostly
    torch's) can take seconds on a busy machine, which would break the promise to exit within
    2 s, and a segmentation in progress on the worker thread is abandoned rather than waited for.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    logger = rclpy.logging.get_logger(NODE_NAME)
    code = 0
    try:
        node = None if stop.is_set() else SsenNode()
    except (WeightsError, ConfigError, SegmenterError, BackendError, InvalidParameterValueException,
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

