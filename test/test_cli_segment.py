"""``ssen segment``: every input kind, the three output files, the table, and bad input -> exit 2."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from ssen_ros import checkpoint
from ssen_ros.cli import main
from ssen_ros.synthetic.generate import generate_scene, write_scene
from ssen_ros.io import Cloud
from ssen_ros.io.pcd import write_pcd
from ssen_ros.io.ply import read_ply, write_ply
from ssen_ros.io.pointcloud2 import to_pointcloud2_parts

STORE = get_typestore(Stores.ROS2_KILTED)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: two OpenMP threads on a busy 2-core machine run up to 100x slower."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    spec = checkpoint.ModelSpec(arch="Res16UNet14S", voxel_size=0.1)
    path = tmp_path_factory.mktemp("w") / "w.pt"
    checkpoint.save(path, spec, *checkpoint.build_pair(spec, backend="torch"))
    return path


@pytest.fixture(scope="module")
def scene():
    return generate_scene(20003, spacing=0.08)


def segment(*args):
    return main(["segment", *map(str, args)])


def check_outputs(out, n_points):
    ply = read_ply(out / "labeled.ply")
    assert len(ply) == n_points and ply.colors is not None
    semantic, instance = ply.fields["label"], ply.fields["instance"]
    record = json.loads((out / "instances.json").read_text())
    ids = sorted(np.unique(instance[instance >= 0]).tolist())
    assert [r["id"] for r in record["instances"]] == ids
    for r in record["instances"]:
        members = instance == r["id"]
        assert r["point_count"] == int(members.sum())
        assert len({tuple(c) for c in ply.colors[members]}) == 1   # one colour per instance
    assert (semantic >= -1).all() and (semantic < 20).all()
    assert {"voxelize", "semantic", "embedding", "cluster", "total"} <= set(record["timings"])
    assert record["input"]["points"] == n_points
    assert (out / "segmentation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return record


def test_ply_input_writes_all_outputs_and_prints_the_table(tmp_path, weights, scene, capsys):
    s = scene.scan
    write_ply(tmp_path / "room.ply", Cloud(s.points, s.colors))
    assert segment(tmp_path / "room.ply", "-o", tmp_path / "out", "--weights", weights,
                   "--backend", "torch", "--device", "cpu") == 0
    record = check_outputs(tmp_path / "out", len(s))
    assert record["input"]["format"] == "ply" and record["input"]["has_colors"]
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["id", "class", "score", "points", "box"]
    assert len(table) == len(record["instances"]) + 3 or (not record["instances"] and len(table) == 4)
    assert "labeled.ply" in table[-1] and "segmentation.png" in table[-1]


def test_optical_frame_input_is_turned_z_up(tmp_path, weights, scene):
    s = scene.scan
    optical = s.points @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float32).T  # x right, y down
    write_ply(tmp_path / "cam.ply", Cloud(optical, s.colors))
    assert segment(tmp_path / "cam.ply", "-o", tmp_path / "out", "--up", "optical", "--weights", weights,
                   "--backend", "torch", "--quiet") == 0
    back = read_ply(tmp_path / "out" / "labeled.ply")
    np.testing.assert_allclose(back.points, s.points, atol=1e-6)
    assert json.loads((tmp_path / "out" / "instances.json").read_text())["input"]["up"] == "optical"


def test_pcd_and_scannet_inputs_and_config_file_with_overrides(tmp_path, weights, scene):
    s = scene.scan
    write_pcd(tmp_path / "room.pcd", Cloud(s.points, s.colors))
    folder = write_scene(tmp_path, scene)
    config = tmp_path / "seg.yaml"
    config.write_text(yaml.safe_dump({"weights": str(weights), "backend": "torch", "tta_rotations": 2,
                                      "cluster": {"method": "fast", "min_cluster_size": 300}}))
    assert segment(tmp_path / "room.pcd", "-o", tmp_path / "a", "--config", config, "--quiet") == 0
    assert segment(folder, "-o", tmp_path / "b", "--config", config, "--clustering", "exact",
                   "--tta", "1", "--quiet") == 0
    a, b = check_outputs(tmp_path / "a", len(s)), check_outputs(tmp_path / "b", len(s))
    assert a["input"]["format"] == "pcd" and b["input"]["format"] == "scannet"
    assert a["config"]["tta_rotations"] == 2 and a["config"]["cluster"]["method"] == "fast"
    assert b["config"]["tta_rotations"] == 1 and b["config"]["cluster"]["method"] == "exact"
    assert b["config"]["cluster"]["min_cluster_size"] == 300


def write_bag(path, clouds):
    types = {n.split("/")[-1]: c for n, c in STORE.types.items() if n in (
        "sensor_msgs/msg/PointCloud2", "sensor_msgs/msg/PointField", "std_msgs/msg/Header",
        "builtin_interfaces/msg/Time")}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/map", "sensor_msgs/msg/PointCloud2", typestore=STORE)
        for i, cloud in enumerate(clouds):
            parts = to_pointcloud2_parts(cloud)
            msg = types["PointCloud2"](
                header=types["Header"](stamp=types["Time"](sec=i + 1, nanosec=0), frame_id="map"),
                height=parts.height, width=parts.width,
                fields=[types["PointField"](name=n, offset=o, datatype=d, count=c) for n, o, d, c in parts.fields],
                is_bigendian=False, point_step=parts.point_step, row_step=parts.row_step,
                data=np.frombuffer(parts.data, np.uint8), is_dense=True)
            writer.write(conn, (i + 1) * 10**9, STORE.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"))


def test_bag_last_or_chosen_message_and_bag_errors(tmp_path, weights, scene, capsys):
    s = scene.scan
    small = Cloud(s.points[::2].copy(), s.colors[::2].copy())
    write_bag(tmp_path / "bag", [small, Cloud(s.points, s.colors)])
    mcap = next((tmp_path / "bag").glob("*.mcap"))
    common = ["--weights", weights, "--backend", "torch", "--quiet"]
    assert segment(mcap, "-o", tmp_path / "last", "--topic", "/map", *common) == 0
    assert segment(tmp_path / "bag", "-o", tmp_path / "first", "--topic", "/map", "--index", "0", *common) == 0
    last, first = check_outputs(tmp_path / "last", len(s)), check_outputs(tmp_path / "first", len(small))
    assert last["input"]["format"] == "rosbag2" and last["input"]["stamp_ns"] == 2 * 10**9
    assert first["input"]["frame_id"] == "map" and first["input"]["stamp_ns"] == 10**9
    capsys.readouterr()
    assert segment(tmp_path / "bag", "-o", tmp_path / "x", *common) == 2
    assert "needs --topic; its PointCloud2 topics: ['/map']" in capsys.readouterr().err
    assert segment(tmp_path / "bag", "-o", tmp_path / "x", "--topic", "/map", "--index", "5", *common) == 2
    assert "has 2 message(s); --index 5 is out of range" in capsys.readouterr().err
    assert segment(tmp_path / "bag", "-o", tmp_path / "x", "--topic", "/scan", *common) == 2
    assert "'/scan' is not in the bag" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_input_exits_2_with_the_reason(tmp_path, weights, capsys):
    (tmp_path / "cloud.xyz").write_text("0 0 0\n")
    (tmp_path / "bad.yaml").write_text("tile_sise: 3\n")
    (tmp_path / "unclosed.yaml").write_text("crop_min: [1, 2\n")
    (tmp_path / "garbage.pt").write_text("not torch")
    (tmp_path / "a_file").write_text("mine")
    write_ply(tmp_path / "ok.ply", Cloud(np.zeros((10, 3), np.float32)))
    write_ply(tmp_path / "nan.ply", Cloud(np.full((10, 3), np.nan, np.float32)))
    os.mkfifo(tmp_path / "pipe.ply")
    cases = [
        ([tmp_path / "missing.ply"], "missing.ply: no such file or folder"),
        ([tmp_path / "cloud.xyz"], "unknown cloud format '.xyz'"),
        ([tmp_path / "ok.ply", "--topic", "/map"], "--topic is for rosbag2 bags"),
        ([tmp_path / "ok.ply", "--config", tmp_path / "bad.yaml"], "unknown key(s) ['tile_sise']"),
        ([tmp_path / "ok.ply", "--weights", tmp_path / "none.pt"], "none.pt does not exist"),
        ([tmp_path / "ok.ply", "--weights", tmp_path], f"weights file {tmp_path} is a folder"),
        ([tmp_path / "ok.ply", "--weights", tmp_path / "garbage.pt"], "garbage.pt cannot be read (not a file"),
        ([tmp_path / "ok.ply", "--config", tmp_path / "unclosed.yaml"], "unclosed.yaml: not valid YAML: "),
        ([tmp_path / "nan.ply"], "nan.ply: no points with finite x, y and z (10 dropped)"),
        ([tmp_path / "pipe.ply"], "pipe.ply: not a regular file or folder"),
    ]
    for args, message in cases:
        # a later --weights in ``args`` overrides the good one
        code = segment(args[0], "-o", tmp_path / "out", "--weights", weights, *args[1:], "--quiet")
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.startswith("ssen segment: "), (args, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    assert segment(tmp_path / "ok.ply", "-o", tmp_path / "a_file", "--weights", weights, "--quiet") == 2
    assert f"-o {tmp_path / 'a_file'}: exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text() == "mine"


def test_an_input_in_the_output_folder_is_never_overwritten(tmp_path, weights, scene, capsys):
    s = scene.scan
    (tmp_path / "out").mkdir()
    given = write_ply(tmp_path / "out" / "labeled.ply", Cloud(s.points, s.colors))
    before = given.read_bytes()
    assert segment(given, "-o", tmp_path / "out", "--weights", weights, "--quiet") == 2
    assert f"-o {given}: is an input of this run" in capsys.readouterr().err
    assert given.read_bytes() == before and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["labeled.ply"]


def test_console_exit_code_for_a_missing_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ssen_ros.cli", "segment", str(tmp_path / "no.pcd"),
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no.pcd: no such file or folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_evaluate_weights_scores_every_configuration_and_writes_the_report(tmp_path, weights, scene, capsys):
    write_scene(tmp_path / "val", scene)
    report = tmp_path / "weights_val.md"
    assert main(["evaluate", "--data", str(tmp_path / "val"), "--weights", str(weights), "--limit", "1",
                 "--output", str(report)]) == 0
    text = report.read_text()
    assert text.startswith("# Shipped weights on the rooms of ")
    assert "Produced by `ssen evaluate " in text and "Scenes: the first 1 synthetic rooms" in text
    rows = [line.split(" |")[0] for line in text.splitlines() if line.startswith("| fast") or line.startswith("| exact")]
    assert rows == ["| fast (defaults)", "| exact", "| fast, no chained-cluster split (split_distance 0)",
                    "| fast, score without size factor (score_half_area 0)"]
    assert f"wrote {report}" in capsys.readouterr().out


def test_evaluate_needs_a_submission_or_data_but_not_both(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "give PRED_DIR GT_DIR, or --data DIR" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err


def test_bad_crop_in_the_config_file_is_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("crop_min: [0.0, 0.0]\n")
    assert segment(tmp_path / "missing.ply", "-o", tmp_path / "out", "--config", tmp_path / "c.yaml") == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"ssen segment: {tmp_path / 'c.yaml'}: crop_min must be empty or [x, y, z], "
                                        "got [0.0, 0.0]"]


def test_a_cloud_without_colour_gets_one_line_saying_so(weights, scene, tmp_path, capsys):
    path = tmp_path / "lidar.pcd"
    write_pcd(path, Cloud(scene.scan.points))
    assert segment(path, "-o", tmp_path / "out", "--weights", weights, "--quiet") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ssen segment: {path}: no colour fields: segmented on geometry alone, which costs "
                   "accuracy (README, 'Results': the rows without colour)"]
    rgb = tmp_path / "rgb.pcd"
    write_pcd(rgb, Cloud(scene.scan.points, scene.scan.colors))
    assert segment(rgb, "-o", tmp_path / "out2", "--weights", weights, "--quiet") == 0
    assert "no colour" not in capsys.readouterr().err


def test_demo_refuses_bad_input_before_starting_any_process(tmp_path, capsys, monkeypatch):
    import ssen_ros.cli.demo as demo

    monkeypatch.setattr(demo.subprocess, "Popen", lambda *a, **k: pytest.fail("a process was started"))
    (tmp_path / "cut.ply").write_text("ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nend_header\n1\n")
    (tmp_path / "a_file").write_text("mine")
    assert main(["demo", "--map", str(tmp_path / "cut.ply")]) == 2
    assert "cut.ply (68 bytes): not a readable PLY file" in capsys.readouterr().err
    assert main(["demo", "-o", str(tmp_path / "a_file")]) == 2
    assert "-o " + str(tmp_path / "a_file") + ": exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text() == "mine"
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--timeout", "-1"])
    assert exit_.value.code == 2 and "must be a finite number > 0.0" in capsys.readouterr().err
