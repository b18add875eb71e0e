"""The import graph runs one way: no module imports rclpy outside ``ssen_ros/ros/``, and no
module of ``ssen_ros`` imports itself back through others."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ssen_ros"
OPTIONAL = {"MinkowskiEngine", "spconv"}
"""Optional engines of ``ssen_ros.sparse``: a backend module may not import where they are absent."""


def module_names() -> list[str]:
    """Every module of ssen_ros in the source tree, except the generated messages."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1:2] == ("msg",) or parts[-1] == "__main__":  # __main__ runs the command
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_modules(name: str, known: set[str]) -> set[str]:
    """The ssen_ros modules that module ``name`` imports anywhere in its body (lazy imports too)."""
    path = PACKAGE.parent / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as a list of modules, or [] when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_find_cycle_finds_a_lazy_import_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_imported_modules_sees_lazy_and_relative_imports():
    known = set(module_names())
    assert "ssen_ros.tiling" in imported_modules("ssen_ros.segmenter", known)
    assert "ssen_ros.sparse.kernel_map" in imported_modules("ssen_ros.sparse", known)


def test_no_import_cycle():
    known = set(module_names())
    graph = {name: imported_modules(name, known) for name in known}
    assert find_cycle(graph) == []


ROS_PACKAGES = {"rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "geometry_msgs",
                "sensor_msgs", "visualization_msgs", "ssen_ros.msg"}


def ros_imports(name: str) -> set[str]:
    """The ROS packages that module ``name`` imports anywhere in its body (lazy imports too)."""
    path = PACKAGE.parent / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        found.update(n for n in names if any(n == p or n.startswith(p + ".") for p in ROS_PACKAGES))
    return {n for n in found if not any(n.startswith(p + ".") for p in ROS_PACKAGES & found)}


def test_only_ros_modules_import_ros():
    assert ros_imports("ssen_ros.ros.player") >= {"rclpy", "sensor_msgs.msg"}
    outside = {n: ros_imports(n) for n in module_names() if not n.startswith("ssen_ros.ros")}
    assert {n: found for n, found in outside.items() if found} == {}


SCRIPT = """
import importlib, json, sys
loaded, skipped = [], []
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name.split(".")[0] not in json.loads(sys.argv[2]):
            raise
        skipped.append(name)
    if "rclpy" in sys.modules:
        loaded.append(name)
        break
print(json.dumps({"rclpy_loaded_by": loaded, "skipped": skipped}))
"""


def test_modules_outside_ros_import_without_rclpy():
    names = [n for n in module_names() if not n.startswith("ssen_ros.ros")]
    assert "ssen_ros.cli.demo" in names and "ssen_ros.segmenter" in names
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(names), json.dumps(sorted(OPTIONAL))],
                         capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["rclpy_loaded_by"] == []
    assert set(report["skipped"]) <= {"ssen_ros.sparse.minkowski_backend", "ssen_ros.sparse.spconv_backend"}


@pytest.mark.ros
def test_the_node_loads_no_optional_dependency():
    """The node runs on setup.py's install_requires alone: no extra is imported with it."""
    code = ("import sys, ssen_ros.ros.node, ssen_ros.segmenter; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'embreex', 'PIL', 'tensorboard'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert out.stdout.split()[-1] == "[]"
