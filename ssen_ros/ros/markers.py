"""RViz markers for instances: one MarkerArray per map, following the field rules of
visualization_msgs/msg/Marker.msg (ros2/common_interfaces).

The array starts with a DELETEALL marker, so boxes of objects that vanished since the last map
disappear, then holds per instance a CUBE (namespace ``boxes``; pose = box centre, rotated by
the oriented box's yaw about z when ``oriented``; scale = full extents) and a TEXT_VIEW_FACING
label "class score" above it (namespace ``labels``; only scale.z, the text height, matters).
Marker ids are the stable instance ids, and colours are the labelled cloud's instance colours.
"""
from __future__ import annotations

import math
from typing import Sequence

from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from ssen_ros.instances import Instance
from ssen_ros.ros.convert import instance_color

BOX_ALPHA = 0.4
TEXT_HEIGHT = 0.15  # metres
TEXT_GAP = 0.1  # metres between the box top and the text centre
MIN_EXTENT = 0.01  # RViz rejects zero scales; a flat instance gets a 1 cm thick box


def _color(instance_id: int, alpha: float) -> ColorRGBA:
    r, g, b = instance_color(instance_id)
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=alpha)


def instance_markers(instances: Sequence[Instance], header: Header, oriented: bool = True
                     ) -> MarkerArray:
    """DELETEALL, then a box and a label per instance, in ``header``'s frame and stamp."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for inst in instances:
        center, size = (inst.obb_center, inst.obb_size) if oriented else (inst.aabb_center, inst.aabb_size)
        yaw = inst.obb_yaw if oriented else 0.0
        box = Marker(header=header, ns="boxes", id=int(inst.id), type=Marker.CUBE,
                     action=Marker.ADD, color=_color(inst.id, BOX_ALPHA))
        box.pose.position.x, box.pose.position.y, box.pose.position.z = map(float, center)
        box.pose.orientation.z, box.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        box.scale.x, box.scale.y, box.scale.z = (max(float(s), MIN_EXTENT) for s in size)
        text = Marker(header=header, ns="labels", id=int(inst.id), type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, color=_color(inst.id, 1.0),
                      text=f"{inst.class_name} {inst.score:.2f}")
        text.pose.position.x, text.pose.position.y = float(center[0]), float(center[1])
        text.pose.position.z = float(center[2]) + float(size[2]) / 2 + TEXT_GAP
        text.pose.orientation.w = 1.0
        text.scale.z = TEXT_HEIGHT
        markers += [box, text]
    return MarkerArray(markers=markers)
