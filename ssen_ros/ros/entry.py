"""``ssen_node``'s entry point: SIGINT/SIGTERM are caught before the heavy imports.

Importing torch and rclpy takes seconds; a signal in that time used to end the process with a
KeyboardInterrupt traceback (SIGINT) or -15 (SIGTERM). This module imports only the standard
library, sets the stop event from both signals first, then imports and runs the node
(``ssen_ros.ros.node.main``), which exits 0 at once if the event is already set.
"""
from __future__ import annotations

from typing import NoReturn, Optional

from ssen_ros.ros.stop_signals import stop_signals


def main(args: Optional[list[str]] = None) -> NoReturn:
    """Run ``ssen_node`` with the stop signals caught from the first moment."""
    with stop_signals() as stop:
        from ssen_ros.ros.node import main as run_node  # seconds: torch, rclpy, the messages

        run_node(args, stop)


if __name__ == "__main__":
    main()
