"""The ROS 2 side of ssen_ros: the node, message conversion, RViz markers and stable ids.

The only package of ssen_ros that imports rclpy and ROS message types (``tracking`` does not).
"""
import os

# The node shares its robot's cores with SLAM: OpenMP threads that spin-wait for each other make
# torch many times slower then (benchmarks/sparse.md). Set before torch is imported; a user's
# own OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
