"""Point-cloud input/output: PointCloud2 bytes, PLY, PCD, ScanNet scene folders, rosbag2/MCAP.

Every reader returns a ``Cloud`` (``ssen_ros.io.cloud``) and raises ``CloudFormatError`` (a
``ValueError``) naming the file, field or byte count at fault. Submodules are imported on use,
so importing this package stays cheap and never imports ROS.
"""
from __future__ import annotations

from pathlib import Path

from ssen_ros.io.cloud import Cloud, CloudFormatError

__all__ = ["Cloud", "CloudFormatError", "read_cloud"]


def read_cloud(path: "str | Path") -> Cloud:
    """Read a ``.ply`` or ``.pcd`` file, or a ScanNet scene folder (its mesh alone; use
    ``ssen_ros.io.scannet.read_scannet_scene`` for its labels). Bags: ``ssen_ros.io.bag``."""
    path = Path(path)
    if path.is_dir():
        from ssen_ros.io.scannet import read_scannet_cloud
        return read_scannet_cloud(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        from ssen_ros.io.ply import read_ply
        return read_ply(path)
    if suffix == ".pcd":
        from ssen_ros.io.pcd import read_pcd
        return read_pcd(path)
    raise CloudFormatError(f"{path}: unknown cloud format {suffix!r} (expected .ply, .pcd or a "
                           f"ScanNet scene folder; bags are read with ssen_ros.io.bag)")
