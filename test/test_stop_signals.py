"""``ssen_ros.ros.stop_signals``: SIGINT and SIGTERM set the event inside the block, even when
ignored before it, and the previous handlers are back after it."""
from __future__ import annotations

import os
import signal
import time

from ssen_ros.ros.stop_signals import stop_signals


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # Python runs the handler at the next bytecode of the main thread


def test_signals_set_the_event_inside_the_block_and_handlers_are_restored_after():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` starts a process
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with stop_signals() as stop:
                assert not stop.is_set()
                _deliver(sig)
                assert stop.is_set()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is on_sigterm
    finally:
        signal.signal(signal.SIGINT, previous)
