"""SIGINT and SIGTERM as an event that a spin loop checks, in place of rclpy's handlers.

rclpy's own handlers shut the context down from inside the signal. A loop that has just passed
its ``rclpy.ok()`` check then spins on a dead context: Jazzy's executor raises RCLError ("the given
context is not valid") and the node's executor was seen to wait forever. So every process here
starts rclpy with ``SignalHandlerOptions.NO``, spins with short timeouts and stops once this event
is set. Standard library only: ``ssen_ros.ros.entry`` installs it before the heavy imports.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """Within the block SIGINT and SIGTERM set the yielded event (also when the process was
    started with them ignored, as ``cmd &`` ignores SIGINT); their handlers are restored after."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
