"""Generated rooms end to end: splits, determinism, ScanNet files, preview PNG, the CLIs."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from ssen_ros.classes import CLASS_NAMES
from ssen_ros.cli import main as ssen
from ssen_ros.synthetic.furniture import FURNITURE_DIR
from ssen_ros.synthetic.generate import SPLITS, generate_scene, preview, scene_name, split_seeds, write_scene

needs_library = pytest.mark.skipif(not (FURNITURE_DIR / "BlendSwap-CC-0.sh3f").is_file(),
                                   reason="Debian package sweethome3d-furniture not installed")


def test_splits_are_fixed_disjoint_ranges():
    assert {k: len(v) for k, v in SPLITS.items()} == {"train": 1200, "val": 300, "test": 100}
    seen = [set(v) for v in SPLITS.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert split_seeds("test", 3) == [20000, 20001, 20002]
    assert split_seeds("val", 2, start=5) == [10005, 10006]
    assert scene_name(20001) == "synth20001_00"
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        split_seeds("dev")
    with pytest.raises(ValueError, match="has 100 seeds"):
        split_seeds("test", 5, start=98)


@needs_library
def test_scene_round_trips_through_scannet_files_and_is_deterministic(tmp_path):
    pytest.importorskip("embreex")
    from ssen_ros.io.scannet import read_scannet_scene

    a = generate_scene(20003, room_type="bathroom", spacing=0.05)
    b = generate_scene(20003, room_type="bathroom", spacing=0.05)
    np.testing.assert_array_equal(a.scan.points, b.scan.points)
    np.testing.assert_array_equal(a.scan.instance, b.scan.instance)
    clutter = a.scan.semantic == -1      # props: ignored, and no instance
    assert clutter.mean() > 0.01 and (a.scan.instance[clutter] == -1).all()
    folder = write_scene(tmp_path, a)
    back = read_scannet_scene(folder)
    assert back.name == "synth20003_00" and len(back.cloud) == len(a.scan)
    np.testing.assert_allclose(back.cloud.points, a.scan.points)
    np.testing.assert_array_equal(back.semantic, a.scan.semantic)
    np.testing.assert_array_equal(back.instance, a.scan.instance)
    png = preview(a, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@needs_library
def test_cli_generate_then_evaluate_ground_truth_scores_one(tmp_path, capsys):
    pytest.importorskip("embreex")
    from ssen_ros.evaluate import Prediction, write_submission
    from ssen_ros.io.scannet import read_scannet_scene

    out = tmp_path / "rooms"
    assert ssen(["generate", str(out), "--split", "test", "--count", "2", "--spacing", "0.05",
                 "--preview"]) == 0
    assert (out / "test.txt").read_text().split() == ["synth20000_00", "synth20001_00"]
    assert (out / "previews" / "synth20001_00.png").is_file()
    assert ssen(["generate", str(out), "--split", "test", "--count", "1", "--start", "2",
                 "--spacing", "0.1", "--noise-scale", "0"]) == 0
    assert (out / "test.txt").read_text().split() == ["synth20000_00", "synth20001_00", "synth20002_00"]
    exact, noisy = read_scannet_scene(out / "synth20002_00"), read_scannet_scene(out / "synth20001_00")
    floor = [s.cloud.points[s.semantic == CLASS_NAMES.index("floor"), 2] for s in (exact, noisy)]  # z = 0
    assert np.abs(floor[0]).max() < 1e-6 < np.abs(floor[1]).max()      # no range noise or drift
    shutil.rmtree(out / "synth20002_00")
    for name in ("synth20000_00", "synth20001_00"):
        s = read_scannet_scene(out / name)
        ids = np.unique(s.instance[s.instance >= 0])
        assert len(ids) >= 5
        write_submission(tmp_path / "pred", name, [
            Prediction(s.instance == i, int(s.semantic[s.instance == i][0]), 0.9) for i in ids])
    capsys.readouterr()
    assert ssen(["evaluate", str(tmp_path / "pred"), str(out)]) == 0
    text = capsys.readouterr().out
    assert "average            1.000    1.000    1.000" in text
    assert (tmp_path / "pred" / "semantic_instance_evaluation.txt").is_file()
    listing = (tmp_path / "pred" / "synth20000_00.txt").read_text()
    assert ssen(["evaluate", str(tmp_path / "pred"), str(out), "--output",
                 str(tmp_path / "pred" / "synth20000_00.txt")]) == 2
    assert "synth20000_00.txt: is an input of this run" in capsys.readouterr().err
    assert (tmp_path / "pred" / "synth20000_00.txt").read_text() == listing


@pytest.mark.parametrize("option, value, message", [
    ("--spacing", "0", "must be a finite number > 0.0"), ("--spacing", "nan", "must be a finite number > 0.0"),
    ("--noise-scale", "-1", "must be a finite number >= 0.0"), ("--count", "x", None),
    ("--count", "-1", "must be a finite number >= 1")])
def test_generate_refuses_options_out_of_range_before_any_work(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_:
        ssen(["generate", str(tmp_path / "rooms"), "--split", "test", "--count", "1", option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {option}" in err and (message is None or message in err)
    assert not (tmp_path / "rooms").exists()
    assert ssen(["evaluate", str(tmp_path / "pred"), str(tmp_path)]) == 2   # no ground truth there
