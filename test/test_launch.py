"""launch/ssen.launch.py and config/ssen.rviz, tested without launch_ros (not on PyPI).

The launch file is compiled, then run against stand-in ``launch``/``launch_ros`` modules that
record what it builds, so the test sees the real arguments it passes: our package, executable,
node name, params file, the device parameter and the input remapping. The RViz config is read
as YAML and must show the node's two visual topics in the ``map`` frame.
"""
import ast
import re
import runpy
import sys
import types
from pathlib import Path

import pytest
import yaml

from ssen_ros.config import NodeConfig, flatten

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPO / "launch" / "ssen.launch.py"
RVIZ_FILE = REPO / "config" / "ssen.rviz"


class Recorded:
    """Stands in for a launch class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _stub_modules(monkeypatch) -> dict[str, type]:
    classes = {name: type(name, (Recorded,), {}) for name in (
        "LaunchDescription", "DeclareLaunchArgument", "SetEnvironmentVariable",
        "EnvironmentVariable", "LaunchConfiguration", "Node")}
    layout = {"launch": ["LaunchDescription"],
              "launch.actions": ["DeclareLaunchArgument", "SetEnvironmentVariable"],
              "launch.substitutions": ["EnvironmentVariable", "LaunchConfiguration"],
              "launch_ros": [], "launch_ros.actions": ["Node"]}
    for module_name, names in layout.items():
        module = types.ModuleType(module_name)
        for n in names:
            setattr(module, n, classes[n])
        monkeypatch.setitem(sys.modules, module_name, module)
    packages = types.ModuleType("ament_index_python.packages")
    packages.get_package_share_directory = lambda name: str(REPO) if name == "ssen_ros" else None
    monkeypatch.setitem(sys.modules, "ament_index_python", types.ModuleType("ament_index_python"))
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", packages)
    return classes


def test_launch_file_compiles():
    compile(LAUNCH_FILE.read_text(), str(LAUNCH_FILE), "exec")
    functions = [n.name for n in ast.parse(LAUNCH_FILE.read_text()).body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in functions


def test_launch_file_starts_our_node_with_the_params_file_device_and_topic(monkeypatch):
    c = _stub_modules(monkeypatch)
    description = runpy.run_path(str(LAUNCH_FILE))["generate_launch_description"]()
    assert isinstance(description, c["LaunchDescription"])
    (entities,) = description.args
    arguments = {e.args[0]: e.kwargs.get("default_value") for e in entities
                 if isinstance(e, c["DeclareLaunchArgument"])}
    assert set(arguments) >= {"input_topic", "device", "params_file"}
    assert arguments["input_topic"] == "map_cloud" and arguments["device"] == "auto"
    assert Path(arguments["params_file"]) == REPO / "config" / "ssen.yaml"
    profile = arguments["fastdds_profile"]
    assert isinstance(profile, c["EnvironmentVariable"])
    assert Path(profile.kwargs["default_value"]) == REPO / "config" / "fastdds.xml"
    assert Path(profile.kwargs["default_value"]).is_file()

    (node,) = [e for e in entities if isinstance(e, c["Node"])]
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"]) == ("ssen_ros", "ssen_node", "ssen_node")
    params_file, overrides = kw["parameters"]
    assert params_file.args == ("params_file",)
    (device_param,) = overrides
    assert device_param in flatten(NodeConfig()) and overrides[device_param].args == ("device",)
    (remap,) = kw["remappings"]
    assert remap[0] == "map_cloud" and remap[1].args == ("input_topic",)


def test_the_launched_executable_is_installed_and_runs_our_main():
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "install(PROGRAMS scripts/ssen_node DESTINATION lib/${PROJECT_NAME})" in cmake
    shared = re.search(r"install\(DIRECTORY ([^)]*) DESTINATION share/\$\{PROJECT_NAME\}\)", cmake)
    assert shared and {"config", "launch"} <= set(shared.group(1).split())
    script = (REPO / "scripts" / "ssen_node").read_text()
    assert "from ssen_ros.ros.entry import main" in script  # signals caught before the heavy imports


@pytest.fixture(scope="module")
def rviz() -> dict:
    return yaml.safe_load(RVIZ_FILE.read_text())["Visualization Manager"]


def test_rviz_config_shows_the_labelled_cloud_and_markers_in_map(rviz):
    assert rviz["Global Options"]["Fixed Frame"] == "map"
    displays = {d["Class"]: d for d in rviz["Displays"]}
    cloud = displays["rviz_default_plugins/PointCloud2"]
    assert cloud["Topic"]["Value"] == "/ssen_node/labeled_cloud"
    assert cloud["Color Transformer"] == "RGB8" and cloud["Enabled"]
    markers = displays["rviz_default_plugins/MarkerArray"]
    assert markers["Topic"]["Value"] == "/ssen_node/markers" and markers["Enabled"]
    assert markers["Namespaces"] == {"boxes": True, "labels": True}
    for d in (cloud, markers):  # the node publishes both reliable and transient local
        assert d["Topic"]["Reliability Policy"] == "Reliable"
        assert d["Topic"]["Durability Policy"] == "Transient Local"
