"""The core library's Python log lines (logger ``ssen_ros``) and Python warnings go to the
node's ROS logger.

The core logs with :mod:`logging` (weights, backend, threads, the CUDA fallback); without this
bridge those lines reached neither /rosout nor the console's ROS format. Records keep their
level; the ROS logger's own threshold decides what is shown. A Python warning (say a torch
``UserWarning`` while a map is segmented, on any thread) becomes one WARN line of the node
instead of two raw lines on stderr; Python's filters still decide which warnings are shown.
"""
from __future__ import annotations

import logging
import warnings

from rclpy.impl.rcutils_logger import RcutilsLogger

CORE_LOGGER = "ssen_ros"


class RosLogHandler(logging.Handler):
    """A :mod:`logging` handler that writes each record to an rclpy logger."""

    def __init__(self, ros_logger: RcutilsLogger):
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(text)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # logging must never break the caller
            self.handleError(record)


def forward_core_logs(ros_logger: RcutilsLogger) -> None:
    """Send the ``ssen_ros`` logger's records (INFO and up) to ``ros_logger`` only."""
    core = logging.getLogger(CORE_LOGGER)
    core.handlers = [RosLogHandler(ros_logger)]
    core.setLevel(logging.INFO)
    core.propagate = False


def forward_warnings(ros_logger: RcutilsLogger) -> None:
    """Show Python warnings meant for stderr as one WARN line each on ``ros_logger``."""
    shown_elsewhere = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if file is not None:  # a caller that chose its own stream keeps it
            shown_elsewhere(message, category, filename, lineno, file, line)
            return
        text = " ".join(str(message).split())  # one line, whatever the message
        ros_logger.warning(f"Python {category.__name__}: {text} ({filename}:{lineno})")

    warnings.showwarning = show
