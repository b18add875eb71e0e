#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the main job on the bundled default map:
# `ssen demo` (ssen_ros/cli/demo.py). Extra arguments go to `ssen demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The demo runs on our torch backend, so it skips the 12-20 minute MinkowskiEngine build
# (the tests build it for the parity test); SSEN_MINKOWSKI=1 builds it here too.
SSEN_MINKOWSKI="${SSEN_MINKOWSKI:-0}" bash scripts/setup.sh
source scripts/env.sh
exec ssen demo "$@"
