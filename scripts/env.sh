# Source this file (`source scripts/env.sh`) to use the .venv that scripts/setup.sh made:
# .venv/bin on PATH (python, ssen, pytest) and the ROS 2 environment of the PyPI wheels.
# LD_LIBRARY_PATH needs nothing here: the wheels' bootstrapper adds .venv/lib for every venv
# Python process.
SSEN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# SSEN_ROS_DISTRO=jazzy: the Jazzy venv of `SSEN_ROS_DISTRO=jazzy scripts/setup.sh` instead.
if [ "${SSEN_ROS_DISTRO:-kilted}" = jazzy ]; then
  export VIRTUAL_ENV=$SSEN_ROOT/.venv-jazzy
else
  export VIRTUAL_ENV=$SSEN_ROOT/.venv
fi
export PATH=$VIRTUAL_ENV/bin:$PATH
# Package index of the wheels and of our messages (get_package_share_directory("ssen_ros")).
export AMENT_PREFIX_PATH=$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# Large clouds need a bigger shared-memory segment than Fast DDS's default (config/fastdds.xml).
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$SSEN_ROOT/config/fastdds.xml}
