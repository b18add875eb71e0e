"""What the node does to one map except publishing: serialised PointCloud2 in, labelled cloud
(serialised), markers and instances with stable ids out. Apart from the node, so the benchmark
times the node's own code."""
from __future__ import annotations

import dataclasses
import gc
import time

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ssen_ros.config import NodeConfig
from ssen_ros.features import NO_COLOUR
from ssen_ros.instances import Instance
from ssen_ros.io import CloudFormatError
from ssen_ros.io.cdr import SerializedCloud, read_pointcloud2
from ssen_ros.io.pointcloud2 import cloud_from_pointcloud2
from ssen_ros.live import LiveSegmenter
from ssen_ros.ros.convert import LabeledCloudEncoder
from ssen_ros.ros.markers import instance_markers
from ssen_ros.ros.tracking import IdTracker, relabel
from ssen_ros.segmenter import Segmenter, SegmenterError


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


@dataclasses.dataclass
class Outputs:
    """What one map gives, ready to publish (the InstanceArray is made when its time is known)."""

    header: Header
    where: str
    """The map's frame and stamp, for log lines."""
    num_points: int
    instances: list[Instance]
    cloud: bytes
    """The labelled cloud, serialised (``ros.convert.LabeledCloudEncoder``): ``publish`` sends it as it is."""
    markers: MarkerArray
    timings: dict[str, float]
    """Seconds per stage, the segmenter's included, in order."""
    segmenter_seconds: float
    notes: list[str] = dataclasses.field(default_factory=list)
    """What the log line must say about the input (no colour, points dropped) and, in live
    mode, how many of the map's tiles were segmented again."""


class MapProcessor:
    """Serialised PointCloud2 -> labelled cloud, markers and instances with stable ids.

    Everything the node does to a map except publishing, so the benchmark times the node's own
    code. Raises ``MapRejected``, ``CloudFormatError`` or ``SegmenterError`` for bad maps.

    After the first map that gives outputs, the objects alive then (modules, the networks, the
    libraries imported on first use) are moved out of the garbage collector's sight
    (``gc.freeze``): they last as long as the process, and every full collection would
    otherwise scan them all, a pause in the middle of a later map. Objects made later are
    collected as before.
    """

    def __init__(self, config: NodeConfig):
        self.config = config
        self.segmenter = Segmenter(config.segmenter)
        self.live = LiveSegmenter(self.segmenter, config.live)
        self.tracker = IdTracker(min_iou=config.id_match_iou)
        self.encode = LabeledCloudEncoder()
        self._tracked_call = -1  # the live segmenter's call whose instances the tracker holds
        self._frozen = False

    def reconfigure(self, config: NodeConfig) -> None:
        """Apply run-time settings (``Segmenter.reconfigure`` refuses the read-only ones)."""
        self.segmenter.reconfigure(config.segmenter)
        self.config = config
        self.tracker.min_iou = config.id_match_iou
        self.live.config = config.live
        self.live.reset()  # kept tiles were segmented with the old settings

    def __call__(self, raw: bytes) -> Outputs:
        """Raises ``MapError`` naming the map's frame and stamp for any map that gives no outputs.

        The map is read in place (``io.cdr``: its points are not copied); bytes that this reader
        does not take go through rclpy's ``deserialize_message``, which fails as it always did."""
        start = time.perf_counter()
        try:
            msg = read_pointcloud2(raw)
            header = Header(frame_id=msg.header.frame_id)
            header.stamp.sec, header.stamp.nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
            msg.header = header
        except ValueError:  # CdrError, or a frame id that is not UTF-8
            msg = deserialize_message(raw, PointCloud2)
        where = map_name(msg.header)
        try:
            with np.errstate(all="ignore"):  # edge cases are handled, not printed
                out = self._outputs(msg, where, start)
        except (MapRejected, CloudFormatError, SegmenterError) as exc:
            raise MapError(where, exc, rejected=True) from exc
        except Exception as exc:  # a bug of ours: still one line, naming the map
            raise MapError(where, exc, rejected=False) from exc
        if not self._frozen:
            gc.freeze()
            self._frozen = True
        return out

    def _outputs(self, msg: "PointCloud2 | SerializedCloud", where: str, start: float) -> Outputs:
        timings: dict[str, float] = {}
        t = start

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
        live = self.config.live.enabled
        seg = (self.live if live else self.segmenter)(cloud.points, cloud.colors)
        timings.update((k, v) for k, v in seg.timings.items() if k != "total")
        t = time.perf_counter()
        # Instances the live segmenter kept unchanged since the tracker's last map keep their ids.
        same = ([int(self.live.previous_[i.id]) for i in seg.instances]
                if live and self.live.calls_ == self._tracked_call + 1 else None)
        ids = self.tracker.update(cloud.points, seg.instance, seg.instances, same)
        self._tracked_call = self.live.calls_ if live else -1
        instances = relabel(seg.instances, ids)
        lap("ids")
        cloud_raw = self.encode(cloud.points, seg.semantic, seg.instance, seg.instances, msg.header, ids)
        lap("encode")
        markers = instance_markers(instances, msg.header, self.config.oriented_boxes)
        lap("markers")
        notes = [] if cloud.colors is not None else [NO_COLOUR]
        if live:
            notes.append(f"live: {len(self.live.changed_)} of {seg.num_tiles} tiles segmented again")
        if seg.num_beyond_limit:
            notes.append(f"{seg.num_beyond_limit} points beyond segmenter.coordinate_limit="
                         f"{self.config.segmenter.coordinate_limit} m dropped")
        return Outputs(msg.header, where, len(cloud), instances, cloud_raw, markers, timings,
                       seg.timings["total"], notes)
