"""The node's ROS parameters, one per leaf of ``NodeConfig``: type from the annotation,
description from the field's docstring, choices, range and read-only flag from the config's
schema (``ssen_ros.config``), so the node holds no second copy of them."""
from __future__ import annotations

import array
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter

from ssen_ros.config import NodeConfig, choices, leaves

_PARAMETER_TYPES = {str: Parameter.Type.STRING, bool: Parameter.Type.BOOL,
                    int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
                    list[str]: Parameter.Type.STRING_ARRAY, list[float]: Parameter.Type.DOUBLE_ARRAY}


def parameter_types(cls: type = NodeConfig) -> dict[str, Parameter.Type]:
    """ROS parameter type of each leaf of a config dataclass, from its annotation (a ``Literal``
    of strings is a string)."""
    return {name: _PARAMETER_TYPES[str if choices(tp) else tp] for name, (tp, _) in leaves(cls).items()}


def descriptor(name: str, description: str, cls: type = NodeConfig) -> ParameterDescriptor:
    """The descriptor of parameter ``name``: description, range, choices, read-only."""
    tp, f = leaves(cls)[name]
    d = ParameterDescriptor(description=description, read_only=f.metadata.get("read_only", False))
    if "range" in f.metadata:
        lo, hi = f.metadata["range"]
        if tp is int:
            d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    if choices(tp):
        d.additional_constraints = "one of: " + ", ".join(choices(tp))
    if d.read_only:
        d.additional_constraints = (d.additional_constraints + "; " if d.additional_constraints
                                    else "") + "read-only: restart the node to change it"
    return d


def plain(value: Any) -> Any:
    """Parameter values as config values (rclpy gives arrays as array.array)."""
    return list(value) if isinstance(value, (array.array, tuple)) else value
