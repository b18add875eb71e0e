#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the tests: all but those marked `slow`.
# Extra arguments go to pytest (a later -m replaces the default selection), e.g.
#   bash scripts/test.sh test/test_messages.py -v        bash scripts/test.sh -m slow
# SSEN_ROS_DISTRO=jazzy runs them with ROS 2 Jazzy instead of Kilted (see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh
if [ "${SSEN_ROS_DISTRO:-kilted}" = jazzy ]; then
  cd build/jazzy/src  # the sources with Jazzy's messages (scripts/setup.sh)
fi
rc=0
python -m pytest -m "not slow" "$@" || rc=$?
if [ "$rc" -eq 5 ]; then  # pytest: no test was collected or selected
  echo "scripts/test.sh: pytest selected no test"
  exit 0
fi
exit "$rc"
