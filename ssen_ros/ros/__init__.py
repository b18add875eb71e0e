"""The ROS 2 side of ssen_ros: the node, message conversion, RViz markers and stable ids.

The only package of ssen_ros that imports rclpy and ROS message types (``tracking`` does not).
"""
