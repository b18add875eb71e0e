"""The node's latest-only worker thread (ssen_ros.worker), without ROS."""
from __future__ import annotations

import threading
import time

from ssen_ros.worker import LatestOnlyWorker


def test_worker_processes_the_newest_item_and_drops_the_rest():
    done, started = [], threading.Event()

    def slow(item):
        started.set()
        time.sleep(0.3)
        done.append(item)

    worker = LatestOnlyWorker(slow)
    worker.submit(0)
    assert started.wait(5)
    for k in range(1, 20):
        worker.submit(k)
    deadline = time.monotonic() + 10
    while 19 not in done and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    assert done == [0, 19] and worker.coalesced == 18 and worker.submitted == 20


def test_worker_keeps_min_period_survives_errors_and_repeats_on_request():
    starts, errors = [], []

    def process(item):
        starts.append((time.monotonic(), item))
        if item == "bad":
            raise ValueError("broken map")

    worker = LatestOnlyWorker(process, min_period=0.4, on_error=errors.append)
    worker.submit("bad")
    time.sleep(0.1)
    worker.submit("a")
    time.sleep(0.1)
    worker.submit("b")  # replaces "a" while the period runs
    deadline = time.monotonic() + 5
    while len(starts) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.repeat_last(str.upper)
    while len(starts) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    assert [item for _, item in starts] == ["bad", "b", "B"]
    assert starts[1][0] - starts[0][0] >= 0.39 and starts[2][0] - starts[1][0] >= 0.39
    assert [str(e) for e in errors] == ["broken map"]


def test_worker_stop_does_not_wait_for_a_long_run():
    worker = LatestOnlyWorker(lambda item: time.sleep(30))
    worker.submit(1)
    time.sleep(0.1)
    t0 = time.monotonic()
    worker.stop(timeout=0.2)
    assert time.monotonic() - t0 < 1.0 and worker.stopping
