"""Launch ssen_node with its parameters from config/ssen.yaml (ROS 2 installs with launch_ros).

    ros2 launch ssen_ros ssen.launch.py input_topic:=/rtabmap/cloud_map device:=cuda

Arguments: ``input_topic`` (the map to segment, remapped onto the node's ``map_cloud``),
``device`` (auto | cpu | cuda), ``params_file`` (default: the installed config/ssen.yaml) and
``fastdds_profile`` (the Fast DDS profile for large clouds the node's participant uses; default:
$FASTDDS_DEFAULT_PROFILES_FILE if set, else the installed config/fastdds.xml). The publisher of
large maps needs the same profile (Fast DDS's default 0.5 MB shared-memory segment loses them;
see config/fastdds.xml).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("ssen_ros")
    return LaunchDescription([
        DeclareLaunchArgument("input_topic", default_value="map_cloud",
                              description="sensor_msgs/PointCloud2 map to segment"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "ssen.yaml"),
                              description="ssen_node parameters"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                              default_value=os.path.join(share, "config", "fastdds.xml")),
            description="Fast DDS XML profile with a shared-memory segment large enough for maps"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile")),
        Node(
            package="ssen_ros",
            executable="ssen_node",
            name="ssen_node",
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"),
                        {"segmenter.device": LaunchConfiguration("device")}],
            remappings=[("map_cloud", LaunchConfiguration("input_topic"))],
        ),
    ])
