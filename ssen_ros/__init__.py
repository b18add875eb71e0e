"""ssen_ros: SSEN 3D instance segmentation (Zhang et al., "Spatial Semantic Embedding Network").

The package is a ROS-free core library; only ``ssen_ros.ros`` imports rclpy.
"""
__version__ = "0.1.0"
