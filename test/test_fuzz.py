"""A bounded fuzz run in the default suite: a few hundred hostile maps of every category
(``benchmarks.fuzz.CATEGORIES``) and good maps, through a real node process over DDS.

Each message must give exactly one log line of the expected kind (``rejected map ...`` or
``map ...``, naming its stamp), the node must not die, and every good map must be segmented.
``python -m benchmarks fuzz`` runs the same harness on 10,000 messages.
"""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="rclpy cannot be imported; run scripts/setup.sh for the ROS 2 wheels")

from ssen_ros import checkpoint  # noqa: E402
from benchmarks.fuzz import CATEGORIES, run_fuzz  # noqa: E402

COUNT = 300
GOOD_EVERY = 10


@pytest.mark.ros
def test_hostile_maps_get_one_line_each_and_good_maps_are_segmented(tmp_path):
    spec = checkpoint.ModelSpec(arch="Res16UNet14S", voxel_size=0.1)
    weights = tmp_path / "tiny.pt"
    checkpoint.save(weights, spec, *checkpoint.build_pair(spec, backend="torch"))
    result = run_fuzz(COUNT, GOOD_EVERY, seed=1, weights=str(weights), random_weights=True, timeout=60.0)
    assert not result.died and not result.problems, "\n".join(result.problems[:10])
    assert set(result.sent) == {c.name for c in CATEGORIES} | {"good map"}
    assert sum(result.sent.values()) == COUNT and result.lines == [1] * COUNT
    assert result.good_segmented == result.sent["good map"] == COUNT // GOOD_EVERY
