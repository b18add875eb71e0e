"""A worker thread that processes only the newest item: the node's maps arrive faster than they
are segmented, and only the latest map matters. No ROS here, so it is tested without rclpy."""
from __future__ import annotations

import threading
import time
from typing import Callable, Generic, Optional, TypeVar

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
