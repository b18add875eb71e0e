"""Point-cloud I/O and voxelisation speed: PointCloud2 decode/encode, PCD read, voxelize (1M points).

``python -m benchmarks io [--points N] [--repeat R]`` writes ``benchmarks/io.md``. Each time is the median
of R runs; each line also gives a baseline measured in the same run (a plain copy of the
message bytes for PointCloud2, ``np.unique(axis=0)`` for voxelisation), as a ratio.
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np

from benchmarks import REPO, peak_rss_mb, time_call, write_results
from ssen_ros.io import Cloud
from ssen_ros.io.pcd import read_pcd
from ssen_ros.io.pointcloud2 import FLOAT32, cloud_from_pointcloud2, to_pointcloud2_parts
from ssen_ros.voxel import voxelize

OFFICE = REPO.parent / "shared" / "data" / "real" / "pcl_office1.pcd"


def _pcl_layout_message(cloud: Cloud) -> SimpleNamespace:
    """The cloud as PCL's PointXYZRGB publishes it: x y z, 4 pad bytes, rgb, 12 pad bytes (32 B)."""
    parts = to_pointcloud2_parts(cloud)
    records = np.frombuffer(parts.data, dtype=np.dtype({"names": ["xyz", "rgb"], "formats": [("<f4", 3), "<f4"],
                                                         "offsets": [0, 12], "itemsize": 16}))
    padded = np.zeros(len(cloud), dtype=np.dtype({"names": ["xyz", "rgb"], "formats": [("<f4", 3), "<f4"],
                                                  "offsets": [0, 16], "itemsize": 32}))
    padded["xyz"], padded["rgb"] = records["xyz"], records["rgb"]
    fields = [("x", 0, FLOAT32, 1), ("y", 4, FLOAT32, 1), ("z", 8, FLOAT32, 1), ("rgb", 16, FLOAT32, 1)]
    return SimpleNamespace(fields=fields, height=1, width=len(cloud), point_step=32, row_step=32 * len(cloud),
                           is_bigendian=False, data=padded.tobytes(), header=None)


def _voxelize_unique_rows(points: np.ndarray, features: np.ndarray) -> None:
    """Baseline: the obvious numpy voxelisation with ``np.unique(axis=0)`` and ``np.add.at``."""
    index = np.floor(points / 0.02).astype(np.int64)
    coords, inverse, counts = np.unique(index, axis=0, return_inverse=True, return_counts=True)
    sums = np.zeros((len(coords), features.shape[1]))
    np.add.at(sums, inverse.reshape(-1), features)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks io", description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="points per synthetic cloud")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median)")
    args = parser.parse_args(argv)
    n, repeat = args.points, args.repeat
    rng = np.random.default_rng(0)
    cloud = Cloud(rng.uniform(-10, 10, (n, 3)).astype(np.float32), rng.integers(0, 256, (n, 3), dtype=np.uint8))
    rows = []

    def row(what: str, seconds: float, baseline: str = "", base_seconds: "float | None" = None) -> None:
        base = f"{baseline} | {base_seconds * 1e3:.1f} | {seconds / base_seconds:.2f}" if base_seconds else " | |"
        rows.append(f"| {what} | {seconds * 1e3:.1f} | {base} |")

    parts = to_pointcloud2_parts(cloud)
    own = SimpleNamespace(header=None, **vars(parts))
    copy_own = time_call(lambda: bytearray(parts.data), repeat)
    row(f"PointCloud2 encode, {n:,} points xyz+rgb (16 B/point)", time_call(lambda: to_pointcloud2_parts(cloud), repeat),
        "a copy of the bytes", copy_own)
    row(f"PointCloud2 decode, {n:,} points xyz+rgb (16 B/point)", time_call(lambda: cloud_from_pointcloud2(own), repeat),
        "a copy of the bytes", copy_own)
    pcl = _pcl_layout_message(cloud)
    assert np.array_equal(cloud_from_pointcloud2(pcl).colors, cloud.colors)
    row(f"PointCloud2 decode, {n:,} points PCL PointXYZRGB layout (32 B/point, padded)",
        time_call(lambda: cloud_from_pointcloud2(pcl), repeat), "a copy of the bytes",
        time_call(lambda: bytearray(pcl.data), repeat))
    if OFFICE.is_file():
        office = read_pcd(OFFICE)
        row(f"PCD read, pcl_office1.pcd (640x480 binary_compressed, {len(office):,} finite points)",
            time_call(lambda: read_pcd(OFFICE), repeat))

    features = cloud.colors.astype(np.float32) / 255 - 0.5
    surface = rng.uniform(0, 5, (n, 3))  # a room's floor and ceiling: many points per 2 cm voxel
    surface[:, 2] = rng.choice([0.0, 2.5], n) + rng.normal(0, 0.005, n)
    for name, points in (("uniform in a 20 m cube (almost 1 point/voxel)", cloud.points.astype(np.float64)),
                         ("on 2 planes of 5x5 m (about 4 points/voxel)", surface)):
        voxels = len(voxelize(points, features))
        row(f"voxelize 2 cm, {n:,} points {name}, {voxels:,} voxels, RGB features",
            time_call(lambda: voxelize(points, features), repeat), "np.unique(axis=0) + np.add.at",
            time_call(lambda: _voxelize_unique_rows(points, features), max(1, repeat // 2)))

    body = ("Median of {r} runs each. Targets (issue 2): PointCloud2 well under 100 ms each way, voxelize well "
            "under 500 ms, for 1M points on 2 cores.\n\n| what | ms | baseline, same run | baseline ms | ms / baseline ms |\n"
            "|---|---|---|---|---|\n"
            .format(r=repeat) + "\n".join(rows) + f"\n\nPeak RSS {peak_rss_mb():.0f} MiB.\n")
    path = write_results("io", "Point-cloud I/O and voxelisation", body)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
