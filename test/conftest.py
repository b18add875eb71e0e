"""Shared test set-up: the `ros` marker's skip rule and an isolated ROS 2 environment.

Tests marked `ros` are skipped, with the reason, only when rclpy cannot be imported (a machine
with the ROS-free `pip install .`). Fixtures:

- ``ros_env``: the environment for ROS processes of this test run: a ROS_DOMAIN_ID unique to this
  pytest process, discovery limited to localhost, and the Fast DDS profile config/fastdds.xml.
- ``ros_python``: starts a Python child process (``python -c CODE`` or ``python FILE``) with that
  environment and ends it at teardown.
- ``weights``, ``ros_side``, ``node`` (one per test module): random tiny weights, this process as a
  ROS participant, and a running ssen_node, from the harness in node_harness.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
FASTDDS_PROFILE = REPO / "config" / "fastdds.xml"


def _rclpy_import_error() -> "str | None":
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        return f"rclpy cannot be imported ({exc}); run scripts/setup.sh for the ROS 2 wheels"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("ros") for item in items):
        return
    reason = _rclpy_import_error()
    if reason is not None:
        for item in items:
            if item.get_closest_marker("ros"):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for ROS processes, isolated from other test runs on this machine.

    Domain ids 1..101 are the range that is safe on Linux; the id comes from the pytest process
    id, so concurrent test runs (other checkouts, CI) very likely get different domains, and
    discovery never leaves this host.
    """
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 101)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def ros_python(ros_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start Python children in ``ros_env``: ``ros_python("-c", code)`` or ``ros_python(path, arg)``.

    stdout and stderr are pipes (text). Children still running at teardown get SIGTERM, then
    SIGKILL after 10 s.
    """
    children: list[subprocess.Popen] = []
    yield _python_starter(ros_env, children)
    for child in children:
        if child.poll() is None:
            _end(child, signal.SIGTERM)


def _python_starter(env: dict[str, str], children: list) -> Callable[..., subprocess.Popen]:
    """A function starting ``python ARGS`` in ``env`` with text pipes, recording it in ``children``."""
    def start(*args: str) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, *args], env=env, cwd=REPO, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        children.append(child)
        return child
    return start


def _end(child: subprocess.Popen, sig: int) -> None:
    """Send ``sig``, then SIGKILL after 10 s."""
    child.send_signal(sig)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from node_harness import tiny_weights
    return tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="module")
def ros_side(ros_env: dict[str, str]) -> Iterator:
    from node_harness import RosSide
    side = RosSide(ros_env)
    yield side
    side.close()


@pytest.fixture(scope="module")
def node(ros_env: dict[str, str], weights: Path, ros_side) -> Iterator:
    """One node for the module's DDS tests (they run in file order and share it)."""
    from node_harness import STARTUP_TIMEOUT_S, NodeProcess, node_args
    children: list[subprocess.Popen] = []
    proc = NodeProcess(_python_starter(ros_env, children), *node_args(weights))
    proc.wait_for("ready: segmenting maps from /map_cloud", STARTUP_TIMEOUT_S)
    yield proc
    for child in children:
        _end(child, signal.SIGINT)
